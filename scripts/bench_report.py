#!/usr/bin/env python3
"""Helpers for scripts/bench (standard library only).

Subcommands, each printing plain text for the shell to read:
  options HOST:PORT              exit 0 once the daemon answers OPTIONS with 200
  cpu PID                        the process's CPU time so far, utime+stime, in ms
  sipp-stats CSV                 created/successful/failed calls and elapsed seconds
                                 from the last row of a SIPp -trace_stat file
  dbcount DB                     rows in the calls table of a SQLite file (all,
                                 ended, with key 2 heard)
  probe HOST:PORT NUMBER SECONDS [DUMP]
                                 one extra call: answer, record when every RTP
                                 packet arrives, hang up; print the pacing figures
                                 (DUMP: also write "arrival_ns seq" lines there)
"""

import math
import os
import random
import socket
import sqlite3
import struct
import sys
import time

PTIME_NS = 20_000_000
# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); Python 3.11 does not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def split_addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def sip_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def token():
    return "%016x" % random.getrandbits(64)


def header(msg, name):
    """First value of a header (full or RFC 3261 compact name), or None."""
    compact = {"via": "v", "to": "t", "from": "f", "call-id": "i", "contact": "m", "cseq": None}
    names = {name.lower(), compact.get(name.lower())}
    for line in msg.split("\r\n")[1:]:
        if not line:
            break
        k, _, v = line.partition(":")
        if k.strip().lower() in names:
            return v.strip()
    return None


def status_of(msg):
    first = msg.split("\r\n", 1)[0]
    if first.startswith("SIP/2.0 "):
        return int(first.split()[1])
    return None


def cmd_options(target):
    host, port = split_addr(target)
    s = sip_socket()
    s.settimeout(1.0)
    lport = s.getsockname()[1]
    msg = (
        f"OPTIONS sip:probe@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{token()}\r\n"
        f"From: <sip:bench@127.0.0.1:{lport}>;tag={token()}\r\n"
        f"To: <sip:probe@{host}:{port}>\r\n"
        f"Call-ID: {token()}@bench\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    try:
        s.sendto(msg.encode(), (host, port))
        data, _ = s.recvfrom(65535)
    except OSError:
        return 1
    return 0 if status_of(data.decode(errors="replace")) == 200 else 1


def cmd_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the ")" that ends the command name: utime is 14th, stime 15th.
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])
    print(ticks * 1000 // os.sysconf("SC_CLK_TCK"))
    return 0


def cmd_sipp_stats(path):
    """One line of key=value from the last row of a SIPp 3.6 -trace_stat CSV."""
    with open(path) as f:
        rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    head, last = rows[0], rows[-1]
    col = {name: i for i, name in enumerate(head)}

    def get(name):
        return last[col[name]] if name in col and col[name] < len(last) else "0"

    def secs(hms):  # "HH:MM:SS:uuuuuu" or "HH:MM:SS"
        parts = hms.split(":")
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        us = int(parts[3]) if len(parts) > 3 else 0
        return h * 3600 + m * 60 + s + us / 1e6

    # INVITE -> 200 times in buckets. The header has a "ResponseTimeRepartition1"
    # title column the rows lack, so the values start right after CallLengthStDev(C).
    names = [n for n in head if n.startswith("ResponseTimeRepartition1_")]
    first = col.get("CallLengthStDev(C)", -1) + 1
    counts = [int(v) for v in last[first : first + len(names)] if v.strip().isdigit()]
    total = sum(counts)

    def bucket(p):
        acc = 0
        for name, c in zip(names, counts):
            acc += c
            if total and acc >= p / 100 * total:
                return name.split("_", 1)[1].replace("<", "lt").replace(">=", "ge")
        return "?"

    print(
        f"created={get('TotalCallCreated')} ok={get('SuccessfulCall(C)')} "
        f"failed={get('FailedCall(C)')} current={get('CurrentCall')} "
        f"retrans={get('Retransmissions(C)')} "
        f"call_len_s={secs(get('CallLength(C)')):.3f} "
        f"rtd_mean_ms={secs(get('ResponseTime1(C)')) * 1000:.1f} "
        f"rtd_std_ms={secs(get('ResponseTime1StDev(C)')) * 1000:.1f} "
        f"rtd_p50_ms={bucket(50)} rtd_p99_ms={bucket(99)} rtd_max_ms={bucket(100)}"
    )
    return 0


def cmd_dbcount(path):
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        total = db.execute("SELECT count(*) FROM calls").fetchone()[0]
        ended = db.execute("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL").fetchone()[0]
        key2 = db.execute("SELECT count(*) FROM calls WHERE keys LIKE '%2%'").fetchone()[0]
        print(f"{total} rows, {ended} ended, {key2} with key 2")
    except sqlite3.Error as e:
        print(f"? ({e})")
    return 0


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, math.ceil(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[i]


def recv_stamped(sock):
    """(data, source, arrival ns). The kernel's receive stamp (SO_TIMESTAMPNS) when
    there is one, so the probe's own scheduling delays on a busy machine do not count."""
    data, anc, _, addr = sock.recvmsg(65535, 64)
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", payload[:16])
            return data, addr, sec * 1_000_000_000 + nsec
    return data, addr, time.time_ns()


def cmd_probe(target, number, seconds, dump=None):
    """One call of our own during the load, measuring the daemon's pacing from outside.

    Every packet's arrival is compared with the 20 ms grid the shared media clock
    ticks on: deviation = arrival - (t0 + k * 20 ms), k the nearest slot, less the
    median deviation (the grid's unknown phase). It prints key=value pairs."""
    host, port = split_addr(target)
    sip = sip_socket()
    lport = sip.getsockname()[1]
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rtp.bind(("127.0.0.1", 0))
    rport = rtp.getsockname()[1]
    call_id, ftag = f"{token()}@bench-probe", token()
    uri = f"sip:{number}@{host}:{port}"
    sdp = (
        "v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rport} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )

    def request(method, ruri, cseq, to, body=""):
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{token()}\r\n"
            f"From: <sip:probe@127.0.0.1:{lport}>;tag={ftag}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:probe@127.0.0.1:{lport}>\r\nMax-Forwards: 70\r\n"
            f"{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def transact(msg, want_cseq, deadline_s=10.0):
        """Send with RFC 3261 Timer A style retransmission; the final response."""
        end = time.monotonic() + deadline_s
        interval = 0.5
        while time.monotonic() < end:
            sip.sendto(msg, (host, port))
            sip.settimeout(interval)
            t_next = time.monotonic() + interval
            while time.monotonic() < t_next:
                try:
                    data, _ = sip.recvfrom(65535)
                except socket.timeout:
                    break
                text = data.decode(errors="replace")
                code = status_of(text)
                if code is None:
                    answer_request(text)
                elif code >= 200 and (header(text, "CSeq") or "").endswith(want_cseq):
                    return text
            interval = min(interval * 2, 4.0)
        return None

    bye_seen = []

    def answer_request(text):
        """The daemon's own BYE (menu timed out): 200 it."""
        if text.startswith("BYE "):
            bye_seen.append(True)
        reply = "SIP/2.0 200 OK\r\n"
        for h in ("Via", "From", "To", "Call-ID", "CSeq"):
            v = header(text, h)
            if v:
                reply += f"{h}: {v}\r\n"
        sip.sendto((reply + "Content-Length: 0\r\n\r\n").encode(), (host, port))

    t_invite = time.monotonic()
    ok = transact(request("INVITE", uri, 1, f"<{uri}>", sdp), "INVITE")
    if ok is None or status_of(ok) != 200:
        print(f"probe_error=no_200 ({ok.split(chr(13))[0] if ok else 'timeout'})")
        return 1
    setup_ms = (time.monotonic() - t_invite) * 1000
    to = header(ok, "To")
    contact = header(ok, "Contact") or f"<{uri}>"
    remote = contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else contact
    sip.sendto(request("ACK", remote, 1, to), (host, port))

    arrivals = []  # (arrival ns, seq)
    rtp.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end and not bye_seen:
        try:
            data, _, t = recv_stamped(rtp)
        except socket.timeout:
            continue
        if len(data) >= 12 and data[0] >> 6 == 2:
            arrivals.append((t, struct.unpack("!H", data[2:4])[0]))
    if not bye_seen:
        transact(request("BYE", remote, 2, to), "BYE")

    if dump:
        with open(dump, "w") as f:
            f.writelines(f"{t} {seq}\n" for t, seq in arrivals)
    n = len(arrivals)
    if n < 2:
        print(f"probe_packets={n} probe_error=no_rtp")
        return 1
    t0 = arrivals[0][0]
    devs = []
    for t, _ in arrivals:
        k = round((t - t0) / PTIME_NS)
        devs.append(t - t0 - k * PTIME_NS)
    med = sorted(devs)[n // 2]
    absdev = sorted(abs(d - med) / 1e6 for d in devs)
    gaps = [(b[0] - a[0]) / 1e6 for a, b in zip(arrivals, arrivals[1:])]
    expected = (arrivals[-1][0] - t0) / PTIME_NS + 1
    within = sum(1 for d in absdev if d <= 2.0)
    print(
        f"probe_setup_ms={setup_ms:.1f} probe_packets={n} probe_expected={expected:.0f} "
        f"probe_within_2ms_pct={100 * within / n:.2f} "
        f"probe_jitter_p50_ms={percentile(absdev, 50):.3f} "
        f"probe_jitter_p99_ms={percentile(absdev, 99):.3f} "
        f"probe_jitter_max_ms={absdev[-1]:.3f} "
        f"probe_max_gap_ms={max(gaps):.1f}"
    )
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "options":
        return cmd_options(args[0])
    if cmd == "cpu":
        return cmd_cpu(args[0])
    if cmd == "sipp-stats":
        return cmd_sipp_stats(args[0])
    if cmd == "dbcount":
        return cmd_dbcount(args[0])
    if cmd == "probe":
        return cmd_probe(args[0], args[1], float(args[2]), args[3] if len(args) > 3 else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
