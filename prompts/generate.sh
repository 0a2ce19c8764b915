#!/usr/bin/env bash
# Regenerate every synthetic prompt WAV in prompts/zh and prompts/en.
#
# Output format: mono, 16-bit signed PCM, 16000 Hz, peak about -3 dBFS.
# The daemon resamples to 8 kHz itself when it loads the prompts.
#
# These are stand-ins made with espeak-ng; an admin may replace any file with
# a real recording (see prompts/README.md). Needs: espeak-ng, sox.
#
# Usage: prompts/generate.sh            (writes next to this script)
#        PROMPTS_OUT=/tmp/p prompts/generate.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${PROMPTS_OUT:-$here}"

# Slower than espeak-ng's default of 175 wpm, for elderly callers.
# cmn-latn-pinyin, not plain cmn: espeak-ng 1.51's "cmn" voice turns hanzi
# into pinyin and then reads that pinyin as English ("gan three xie four").
ZH_VOICE=cmn-latn-pinyin
ZH_SPEED=140
EN_VOICE=en
EN_SPEED=150

for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# speak VOICE SPEED TEXT OUTFILE
speak() {
  local voice="$1" speed="$2" text="$3" dest="$4"
  espeak-ng -v "$voice" -s "$speed" -w "$tmp/raw.wav" -- "$text"
  # espeak-ng writes 22050 Hz mono with ~150 ms of silence in front. Trim
  # it (anything under 0.1% for >10 ms), start with a 20 ms fade-in after
  # 30 ms of silence so the first sample is no click; resample to 16 kHz;
  # normalise the peak to -3 dBFS; 16-bit mono PCM.
  sox -q "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$tmp/trim.wav" \
    silence 1 0.01 0.1% \
    fade t 0.02 \
    pad 0.03 0 \
    norm -3
  mv "$tmp/trim.wav" "$dest"
}

# The prompt table: name | Mandarin | English. This is the text spoken, so
# "110" is written as it is said: 幺幺零 (yao yao ling), "one one oh".
# Station ids are those of the built-in stations:
# property, health, counseling, assistance, culture, party, desk.
read -r -d '' TABLE <<'EOF' || true
welcome|您好，这里是市政社区红色幺幺零民生热线。|Hello, this is the Red one one oh community livelihood hotline.
menu|物业管理请按1，健康咨询请按2，心理咨询请按3，帮扶助困请按4，文体活动请按5，党建宣传请按6，值班接待请按0。|For property management press 1, for health questions press 2, for psychological support press 3, for hardship assistance press 4, for culture and sports press 5, for party-building information press 6, for the duty desk press 0.
menu_short|物业按1，健康按2，心理按3，帮扶按4，文体按5，党建按6，值班按0。|Press 1 property, 2 health, 3 psychological support, 4 hardship assistance, 5 culture and sports, 6 party-building, 0 duty desk.
invalid|您的选择无效，请重新选择。|Sorry, that is not a valid choice.
station_property|正在为您转接物业管理督导站，请稍候。|Connecting you to the property management station, please hold.
station_health|正在为您转接健康咨询辅导站，请稍候。|Connecting you to the health consultation station, please hold.
station_counseling|正在为您转接心理咨询疏导站，请稍候。|Connecting you to the psychological counseling station, please hold.
station_assistance|正在为您转接帮扶助困服务站，请稍候。|Connecting you to the hardship assistance station, please hold.
station_culture|正在为您转接文体娱乐活动站，请稍候。|Connecting you to the culture and sports activities station, please hold.
station_party|正在为您转接党建理论宣传站，请稍候。|Connecting you to the party-building information station, please hold.
station_desk|正在为您转接值班接待，请稍候。|Connecting you to the duty desk, please hold.
no_volunteer|抱歉，暂时没有志愿者可以接听，请稍后再拨。|Sorry, no volunteer is available right now. Please call again later.
all_busy|志愿者都在忙，请在提示音后留言，我们会尽快回电。|All volunteers are busy. Please leave a message after the tone and we will call you back.
screen|红色幺幺零热线来电，按1接听。|Red one one oh hotline call. Press 1 to accept.
goodbye|感谢您的来电，再见。|Thank you for calling. Goodbye.
EOF

mkdir -p "$out/zh" "$out/en"
while IFS='|' read -r name zh en; do
  [ -n "$name" ] || continue
  speak "$ZH_VOICE" "$ZH_SPEED" "$zh" "$out/zh/$name.wav"
  speak "$EN_VOICE" "$EN_SPEED" "$en" "$out/en/$name.wav"
  echo "  $name"
done <<<"$TABLE"

# The tone before a voicemail message: 0.5 s of 1000 Hz with 10 ms ramps
# (no click), same file in both languages.
sox -q -n -r 16000 -c 1 -b 16 -e signed-integer "$tmp/beep.wav" \
  synth 0.5 sine 1000 fade t 0.01 0.5 0.01 norm -3
cp "$tmp/beep.wav" "$out/zh/beep.wav"
cp "$tmp/beep.wav" "$out/en/beep.wav"
echo "  beep"

echo "prompts written to $out/zh and $out/en"
