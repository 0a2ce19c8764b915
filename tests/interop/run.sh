#!/usr/bin/env bash
# Interop test: real SIP clients (SIPp, baresip) against the hotline daemon
# over loopback. Starts its own daemon with its own config, roster and SQLite
# file, runs the scenarios, then checks the call records the daemon wrote.
#
# Callers: SIPp and baresip. Volunteers: SIPp UAS scenarios that answer, are
# busy, ring without answering, or sit behind a trunk that demands digest
# authentication (407). The roster leaves health (key 2) and the duty desk
# with nobody, so the older menu-only callers still hear "no volunteer" and
# get the hotline's BYE; keys 1, 3, 4 and 5 reach the SIPp volunteers.
#
# Usage: bash tests/interop/run.sh
#   HOTLINE_BIN=target/debug/hotline   use this binary, do not build
#   HOTLINE_SIP_PORT=25060             the daemon's SIP port
#   HOTLINE_LANG=zh                    prompt language (zh prompts are longer)
#   KEEP_WORK=1                        keep the temp folder (logs, db)
# Needs: cargo (unless HOTLINE_BIN), sipp (sip-tester), baresip, sox, python3.
# Prints one PASS/FAIL line per check and "N passed, N failed" at the end;
# exits non-zero if any check failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${HOTLINE_SIP_PORT:-25060}"
lang="${HOTLINE_LANG:-zh}"
number=6289110
target="127.0.0.1:$port"
# The trunk's account, and the number its volunteer is called at.
trunk_user=6289110
trunk_pass=interop-secret
trunk_number=13800138009

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

for tool in sipp baresip sox python3 timeout; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not installed"; exit 2; }
done
dtmf_pcap=/usr/share/sip-tester/dtmf_2833_2.pcap
[ -r "$dtmf_pcap" ] || { echo "FAIL: $dtmf_pcap missing (package sip-tester)"; exit 2; }

# --- the binary -------------------------------------------------------------
if [ -n "${HOTLINE_BIN:-}" ]; then
  bin="$HOTLINE_BIN"
else
  echo "== cargo build (debug)"
  (cd "$root" && timeout 1800 cargo build --quiet --bin hotline) || { echo "FAIL: cargo build"; exit 2; }
  bin="$root/target/debug/hotline"
fi
[ -x "$bin" ] || { echo "FAIL: no executable at $bin"; exit 2; }

# --- a private config and database ------------------------------------------
work="$(mktemp -d /tmp/hotline-interop.XXXXXX)"
cfg="$work/hotline.toml"
cat >"$cfg" <<EOF
[sip]
listen = "$target"
numbers = ["$number"]

[media]
rtp_ports = "31000-31999"
# SIPp callers send no voice RTP (only the DTMF events): keep the daemon's
# no-media hang-up out of the way of the minute-long no-key call.
rtp_timeout_s = 300

[database]
url = "sqlite://$work/hotline.db"

[menu]
language = "$lang"
prompts_dir = "$root/prompts"
timeout_s = 3
max_tries = 2

[forward]
# The no-answer volunteer rings this long before the CANCEL.
ring_timeout_s = 3
# Nobody on duty: "no volunteer available" and the hotline's BYE, no recording.
voicemail = false
voicemail_dir = "$work/voicemail"

# The SIPp scenario sipp_trunk_407.xml plays the trunk.
[trunk]
proxy = "127.0.0.1:25075"
domain = "127.0.0.1"
username = "$trunk_user"
password = "$trunk_pass"
register = false

[roster]
file = "$work/roster.toml"
EOF

# Every volunteer is on a fallback list, so the roster does not depend on
# the day or the hour. health and desk have nobody.
cat >"$work/roster.toml" <<EOF
timezone = "Asia/Shanghai"

[[volunteer]]
id = "busy"
name = "busy volunteer (SIPp, 486)"
phone = "sip:vol@127.0.0.1:25071"

[[volunteer]]
id = "answer_a"
name = "answers after the busy one (SIPp)"
phone = "sip:vol@127.0.0.1:25072"

[[volunteer]]
id = "noanswer"
name = "rings, never answers (SIPp)"
phone = "sip:vol@127.0.0.1:25073"

[[volunteer]]
id = "answer_b"
name = "answers after the no-answer one (SIPp)"
phone = "sip:vol@127.0.0.1:25074"

[[volunteer]]
id = "mobile"
name = "a mobile behind the 407 trunk (SIPp)"
phone = "$trunk_number"

[[volunteer]]
id = "echo"
name = "answers the baresip caller, echoes RTP (SIPp)"
phone = "sip:vol@127.0.0.1:25076"

[[fallback]]
station = "property"
volunteers = ["busy", "answer_a"]

[[fallback]]
station = "counseling"
volunteers = ["noanswer", "answer_b"]

[[fallback]]
station = "assistance"
volunteers = ["mobile"]

[[fallback]]
station = "culture"
volunteers = ["echo"]
EOF

daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill "$daemon_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon_pid" 2>/dev/null
  fi
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$failed" -gt 0 ]; then
    echo "logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

show_log() { # show_log FILE: the tail of a log, indented, after a failure
  [ -s "$1" ] && { echo "  --- tail of $1"; tail -n "${2:-25}" "$1" | sed 's/^/  | /'; }
  return 0
}

# --- start the daemon -------------------------------------------------------
echo "== starting $bin run --config $cfg"
RUST_LOG="${RUST_LOG:-info}" "$bin" run --config "$cfg" >"$work/hotline.log" 2>&1 &
daemon_pid=$!

cd "$work" # SIPp writes its *_errors.log files to the current folder

# SIPp options common to every scenario. -nostdin: CI has no terminal.
sipp_run() { # sipp_run NAME SCENARIO LOCAL_PORT MEDIA_PORT GLOBAL_TIMEOUT_S
  local name="$1" sf="$2" lport="$3" mport="$4" secs="$5"
  case "$sf" in /*) ;; *) sf="$here/$sf" ;; esac
  timeout $((secs + 15)) sipp -sf "$sf" -s "$number" \
    -i 127.0.0.1 -p "$lport" -mi 127.0.0.1 -mp "$mport" \
    -m 1 -timeout "${secs}s" -timeout_error -trace_err -nostdin \
    "$target" >"$work/$name.out" 2>&1
}

up=0
for _ in $(seq 30); do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then break; fi
  if sipp_run probe sipp_options.xml 25089 26900 3; then up=1; break; fi
  sleep 1
done
if [ "$up" = 1 ]; then
  pass "daemon is up and answers OPTIONS on $target"
else
  if kill -0 "$daemon_pid" 2>/dev/null; then
    fail "daemon did not answer OPTIONS within 30 s"
  else
    wait "$daemon_pid"; fail "daemon exited (status $?) before answering OPTIONS"
  fi
  show_log "$work/hotline.log" 40
  echo "interop: 0 passed, $failed failed"
  exit 1
fi

# --- SIPp scenarios ---------------------------------------------------------
if sipp_run options sipp_options.xml 25081 26000 10; then
  pass "sipp OPTIONS -> 200"
else
  fail "sipp OPTIONS (exit $?)"; show_log "$work/options.out"
fi

# The no-key call takes about a minute (menu twice, then the desk fallback):
# run it alongside the others, which also proves two calls at once work.
sipp_run nokey sipp_nokey_uac.xml 25083 26200 150 &
nokey_pid=$!

if sipp_run dtmf sipp_dtmf_uac.xml 25082 26100 60; then
  pass "sipp DTMF 2: answered, hotline hung up after the station prompts"
else
  fail "sipp DTMF 2 call (exit $?)"; show_log "$work/dtmf.out"
fi

if [ -f "$here/sipp_cancel_uac.xml" ]; then
  if sipp_run cancel sipp_cancel_uac.xml 25084 26300 30; then
    pass "sipp CANCEL: 487 (or answered then BYE when CANCEL crossed the 200)"
  else
    fail "sipp CANCEL call (exit $?)"; show_log "$work/cancel.out"
  fi
fi

# --- baresip: a real softphone sends RFC 4733 DTMF 2 ------------------------
bdir="$work/baresip"
mkdir -p "$bdir"
sox -q -n -r 8000 -c 1 -b 16 "$bdir/voice.wav" synth 60 sine 440 vol 0.1
cat >"$bdir/config" <<EOF
poll_method		epoll
sip_listen		127.0.0.1:25070
sip_transports		udp
audio_source		aufile,$bdir/voice.wav
audio_player		aubridge,nowhere
audio_alert		aubridge,nowhere
audio_srate		8000
audio_channels		1
rtp_ports		26400-26499
module_path		/usr/lib/baresip/modules
module			stdio.so
module			g711.so
module			aufile.so
module			aubridge.so
module_app		account.so
module_app		menu.so
EOF
echo '<sip:caller@127.0.0.1>;regint=0' >"$bdir/accounts"
# Commands go in on stdin (baresip's stdio UI reads them even without a tty):
# dial at once, press 2 after 4 s, quit after 30 s. The hotline should hang
# up first, after station_health + no_volunteer.
(sleep 4; echo "/sndcode 2"; sleep 26; echo "/quit") |
  timeout 60 baresip -f "$bdir" -e "/dial sip:$number@$target" -t 40 >"$work/baresip.out" 2>&1
if grep -q "Call established" "$work/baresip.out"; then
  pass "baresip call established"
else
  fail "baresip call not established"; show_log "$work/baresip.out"
fi
if grep -q "send DTMF digit end: '2'" "$work/baresip.out"; then
  pass "baresip sent DTMF 2"
else
  fail "baresip did not send DTMF 2"; show_log "$work/baresip.out"
fi
if grep -q "session closed" "$work/baresip.out"; then
  pass "hotline hung up the baresip call"
else
  fail "baresip call was not hung up by the hotline within 30 s"; show_log "$work/baresip.out"
fi

# --- forwarding: SIPp volunteers, a SIPp trunk, SIPp and baresip callers ----
# Each volunteer is a SIPp UAS on its own port, started before its caller,
# taking exactly one call (-m 1) within a global timeout; exit 0 means its
# scenario ran to the end (e.g. the no-answer one saw the CANCEL).
sipp_uas() { # sipp_uas NAME SCENARIO LOCAL_PORT MEDIA_PORT GLOBAL_TIMEOUT_S [SIPP OPTION...]
  local name="$1" sf="$2" lport="$3" mport="$4" secs="$5"
  shift 5
  timeout $((secs + 15)) sipp -sf "$here/$sf" \
    -i 127.0.0.1 -p "$lport" -mi 127.0.0.1 -mp "$mport" \
    -m 1 -timeout "${secs}s" -timeout_error -trace_err -nostdin \
    "$@" >"$work/$name.out" 2>&1
}
sipp_uas vol_busy sipp_volunteer_busy.xml 25071 26500 90 & vol_busy_pid=$!
sipp_uas vol_answer_a sipp_volunteer_answer.xml 25072 26510 90 -rtp_echo & vol_answer_a_pid=$!
sipp_uas vol_noanswer sipp_volunteer_noanswer.xml 25073 26520 90 & vol_noanswer_pid=$!
sipp_uas vol_answer_b sipp_volunteer_answer.xml 25074 26530 90 -rtp_echo & vol_answer_b_pid=$!
sipp_uas trunk sipp_trunk_407.xml 25075 26540 90 -rtp_echo \
  -trace_logs -log_file "$work/trunk_auth.log" & trunk_pid=$!
sipp_uas vol_echo sipp_volunteer_answer.xml 25076 26550 90 -rtp_echo & vol_echo_pid=$!

# One caller scenario per station: sipp_forward_uac.xml with that key's
# RFC 4733 pcap and a caller number of its own (to find its call record).
fwd_scenario() { # fwd_scenario KEY CALLER_NUMBER: prints the path of the copy
  local out="$work/sipp_forward_uac_$1.xml"
  sed -e "s/dtmf_2833_1\.pcap/dtmf_2833_$1.pcap/" -e "s/13800000011/$2/g" \
    "$here/sipp_forward_uac.xml" >"$out"
  echo "$out"
}
sleep 1 # let the volunteers bind their ports
sipp_run fwd_busy "$(fwd_scenario 1 13800000011)" 25091 26600 60 & fwd_busy_pid=$!
sipp_run fwd_noanswer "$(fwd_scenario 3 13800000013)" 25093 26700 60 & fwd_noanswer_pid=$!
sipp_run fwd_trunk "$(fwd_scenario 4 13800000014)" 25094 26800 60 & fwd_trunk_pid=$!

# baresip presses 5 (culture): the SIPp volunteer there echoes RTP, so the
# 1300 Hz tone baresip sends comes back through both legs of the bridge.
# The sndfile module writes what baresip decoded to a WAV file.
fdir="$work/baresip_fwd"
mkdir -p "$fdir"
sox -q -n -r 8000 -c 1 -b 16 "$fdir/tone.wav" synth 60 sine 1300 vol 0.3
sed -e "s#^sip_listen.*#sip_listen\t\t127.0.0.1:25077#" \
  -e "s#^audio_source.*#audio_source\t\taufile,$fdir/tone.wav#" \
  -e "s#^rtp_ports.*#rtp_ports\t\t27000-27099#" "$bdir/config" >"$fdir/config"
printf 'module\t\t\tsndfile.so\nsnd_path\t\t%s\n' "$fdir" >>"$fdir/config"
echo '<sip:bridged@127.0.0.1>;regint=0' >"$fdir/accounts"
(sleep 4; echo "/sndcode 5"; sleep 22; echo "/quit") |
  timeout 60 baresip -f "$fdir" -e "/dial sip:$number@$target" -t 40 >"$work/baresip_fwd.out" 2>&1

waited() { # waited PID LABEL LOG: PASS if the background job exited 0
  if wait "$1"; then
    pass "$2"
  else
    fail "$2 (exit $?)"; show_log "$3"
  fi
}
waited "$fwd_busy_pid" "sipp caller, key 1: put through, hung up after ~10 s of conversation" "$work/fwd_busy.out"
waited "$fwd_noanswer_pid" "sipp caller, key 3: put through, hung up after ~10 s of conversation" "$work/fwd_noanswer.out"
waited "$fwd_trunk_pid" "sipp caller, key 4: put through, hung up after ~10 s of conversation" "$work/fwd_trunk.out"
waited "$vol_busy_pid" "sipp volunteer answered 486 Busy Here and got the ACK" "$work/vol_busy.out"
waited "$vol_answer_a_pid" "sipp volunteer (after busy) answered, got ACK and the hotline's BYE" "$work/vol_answer_a.out"
waited "$vol_noanswer_pid" "sipp volunteer rang 3 s, got CANCEL, sent 487, got ACK" "$work/vol_noanswer.out"
waited "$vol_answer_b_pid" "sipp volunteer (after no answer) answered, got ACK and the hotline's BYE" "$work/vol_answer_b.out"
waited "$trunk_pid" "sipp trunk: 407, then an INVITE with Proxy-Authorization, answered, BYE" "$work/trunk.out"
waited "$vol_echo_pid" "sipp volunteer for baresip answered, echoed RTP, got the hotline's BYE" "$work/vol_echo.out"

if grep -q "Call established" "$work/baresip_fwd.out" && grep -q "send DTMF digit end: '5'" "$work/baresip_fwd.out"; then
  pass "baresip caller pressed 5"
else
  fail "baresip caller (key 5) not established or no DTMF"; show_log "$work/baresip_fwd.out"
fi

# The trunk logged "AUTH <Request-URI> Digest ..."; recompute the digest
# (RFC 2617 section 3.2.2: MD5, qop=auth) with the configured password.
if python3 - "$work/trunk_auth.log" "$trunk_user" "$trunk_pass" "sip:$trunk_number@127.0.0.1" \
  >"$work/digest.txt" 2>&1 <<'PY'
import hashlib, re, sys
log, user, password, want_uri = sys.argv[1:5]
line = next((l for l in open(log) if "AUTH " in l), None)
assert line, "no AUTH line: the trunk never saw an authenticated INVITE"
ruri, header = line.split("AUTH ", 1)[1].strip().split(" ", 1)
p = dict((k.lower(), v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header))
md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
ha1 = md5(f"{user}:{p['realm']}:{password}")
ha2 = md5(f"INVITE:{p['uri']}")
want = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
print(f"Request-URI {ruri}; {header}")
assert ruri == want_uri, f"Request-URI {ruri!r}, want {want_uri!r}"
assert p["username"] == user, f"username {p['username']!r}"
assert p["realm"] == "hotline-trunk" and p["qop"] == "auth", (p["realm"], p["qop"])
assert p.get("algorithm", "MD5").upper() == "MD5", p.get("algorithm")
assert p["response"].lower() == want, f"response {p['response']} != {want}"
print("digest response verified")
PY
then
  pass "trunk INVITE to $trunk_number: Proxy-Authorization digest is right for the configured password"
else
  fail "trunk digest check"; show_log "$work/digest.txt"; show_log "$work/trunk_auth.log"
fi

# Audio both ways: baresip's decoded audio (the -dec.wav sndfile wrote) must
# hold its own 1300 Hz tone for at least 2 s: out through the hotline to the
# volunteer, echoed, and back. Prompts and the 450 Hz ringback do not count.
dec_wav="$(ls "$fdir"/*-dec.wav 2>/dev/null | head -n 1)"
if [ -n "$dec_wav" ] && python3 - "$dec_wav" >"$work/echo.txt" 2>&1 <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1])
rate, n = w.getframerate(), w.getnframes()
pcm = struct.unpack(f"<{n * w.getnchannels()}h", w.readframes(n))[:: w.getnchannels()]
block = rate // 10  # 100 ms
coeff = 2 * math.cos(2 * math.pi * 1300 / rate)
tone_blocks = 0
for i in range(0, len(pcm) - block, block):
    x = pcm[i : i + block]
    s1 = s2 = 0.0
    for v in x:  # Goertzel at 1300 Hz
        s1, s2 = v + coeff * s1 - s2, s1
    power = (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / len(x)
    energy = sum(v * v for v in x)
    if energy > len(x) * 100**2 and power > 0.5 * energy:
        tone_blocks += 1
print(f"{tone_blocks / 10:.1f} s of the 1300 Hz tone in {len(pcm) / rate:.1f} s received")
sys.exit(0 if tone_blocks >= 20 else 1)
PY
then
  pass "baresip heard its own tone back through the bridge: $(cat "$work/echo.txt")"
else
  fail "baresip did not hear its tone echoed through the bridge (${dec_wav:-no -dec.wav written})"
  show_log "$work/echo.txt"; show_log "$work/baresip_fwd.out"
fi

if wait "$nokey_pid"; then
  pass "sipp no key: menu repeated, desk fallback, hotline hung up"
else
  fail "sipp no-key call (exit $?)"; show_log "$work/nokey.out"
fi

# --- the call records -------------------------------------------------------
sleep 1
if timeout 30 "$bin" calls --config "$cfg" --json --limit 20 >"$work/calls.json" 2>"$work/calls.err"; then
  pass "hotline calls --json"
else
  fail "hotline calls --json (exit $?)"; show_log "$work/calls.err"
fi

# One line per check: PASS/FAIL text. Callers: 13800000002 (SIPp DTMF),
# 13800000003 (SIPp no key), caller (baresip); forwarded: 13800000011 (key 1),
# 13800000013 (key 3), 13800000014 (key 4), bridged (baresip, key 5).
python3 - "$work/calls.json" >"$work/checks.txt" <<'PY'
import json, sys
try:
    calls = json.load(open(sys.argv[1]))
    assert isinstance(calls, list)
except Exception as e:
    print(f"FAIL: call records are not a JSON array: {e}")
    sys.exit(0)

def find(user):
    for c in calls:
        if user in str(c.get("caller", "")):
            return c
    return None

def has_key(c, k):
    keys = c.get("keys")
    return isinstance(keys, (str, list)) and (k in keys or k in "".join(map(str, keys)))

def check(label, user, station, key=None):
    c = find(user)
    if c is None:
        print(f"FAIL: {label}: no call record with caller {user!r}")
        return
    ok = c.get("station") == station and (key is None or has_key(c, key))
    want = f"station={station}" + (f" keys~{key}" if key else "")
    got = f"station={c.get('station')!r} keys={c.get('keys')!r} outcome={c.get('outcome')!r} hangup_by={c.get('hangup_by')!r}"
    print(f"{'PASS' if ok else 'FAIL'}: {label}: want {want}, got {got}")

check("record of SIPp DTMF call", "13800000002", "health", "2")
check("record of SIPp no-key call", "13800000003", "desk")
check("record of baresip call", "caller", "health", "2")

def check_forwarded(label, user, station, want):
    """want: [(volunteer, result, sip_status or None)] in attempt order."""
    c = find(user)
    if c is None:
        print(f"FAIL: {label}: no call record with caller {user!r}")
        return
    got = [(a.get("volunteer"), a.get("result"), a.get("sip_status")) for a in c.get("attempts", [])]
    ok = (
        c.get("station") == station
        and c.get("outcome") == "connected"
        and c.get("hangup_by") == "caller"
        and c.get("volunteer") == want[-1][0]
        and len(got) == len(want)
        and all(g[0] == w[0] and g[1] == w[1] and (w[2] is None or g[2] == w[2]) for g, w in zip(got, want))
    )
    summary = (f"station={c.get('station')!r} outcome={c.get('outcome')!r} hangup_by={c.get('hangup_by')!r} "
               f"volunteer={c.get('volunteer')!r} attempts={got}")
    print(f"{'PASS' if ok else 'FAIL'}: {label}: {summary}")

check_forwarded("record of key 1: busy, then answered", "13800000011", "property",
                [("busy", "busy", 486), ("answer_a", "answered", 200)])
check_forwarded("record of key 3: no answer, then answered", "13800000013", "counseling",
                [("noanswer", "no_answer", None), ("answer_b", "answered", 200)])
check_forwarded("record of key 4: answered through the 407 trunk", "13800000014", "assistance",
                [("mobile", "answered", 200)])
check_forwarded("record of baresip key 5: answered by the echoing volunteer", "bridged", "culture",
                [("echo", "answered", 200)])
# The attempt through the trunk dials the number at the trunk's domain.
c = find("13800000014")
targets = [a.get("target") for a in (c or {}).get("attempts", [])]
print(f"{'PASS' if targets == ['sip:13800138009@127.0.0.1'] else 'FAIL'}: trunk attempt target: {targets}")
PY
while IFS= read -r line; do
  case "$line" in
    PASS:*) pass "${line#PASS: }" ;;
    *) fail "${line#FAIL: }" ;;
  esac
done <"$work/checks.txt"
[ "$failed" -gt 0 ] && { show_log "$work/calls.json" 40; show_log "$work/hotline.log" 40; }

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
