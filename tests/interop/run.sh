#!/usr/bin/env bash
# Interop test: real SIP clients (SIPp, baresip) against the hotline daemon
# over loopback. Starts its own daemon with its own config and SQLite file,
# runs the scenarios, then checks the call records the daemon wrote.
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
  timeout $((secs + 15)) sipp -sf "$here/$sf" -s "$number" \
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

if wait "$nokey_pid"; then
  pass "sipp no key: menu repeated, desk fallback, hotline hung up"
else
  fail "sipp no-key call (exit $?)"; show_log "$work/nokey.out"
fi

# --- the call records -------------------------------------------------------
sleep 1
if timeout 30 "$bin" calls --config "$cfg" --json --limit 10 >"$work/calls.json" 2>"$work/calls.err"; then
  pass "hotline calls --json"
else
  fail "hotline calls --json (exit $?)"; show_log "$work/calls.err"
fi

# One line per check: PASS/FAIL text. Callers: 13800000002 (SIPp DTMF),
# 13800000003 (SIPp no key), caller (baresip).
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
