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
  ulaw WAV OUT                   a 16-bit mono WAV as 8 kHz G.711 mu-law bytes (the
                                 raw file SIPp's rtp_stream plays)
  roster N HOST:PORT OUT         a roster of N volunteers sip:v0001@HOST:PORT...,
                                 all on duty for station "property" round the clock
  truesize                       the kernel's bytes of receive buffer per 172-byte
                                 RTP datagram on loopback (to count queued packets)
  udp-watch OUT SECONDS PORT...  every 0.5 s, write each port's socket counters
                                 ("port rx_queue_bytes drops") from /proc/net/udp
                                 to OUT, keeping the last value seen per port
  bridged DIR                    the figures of one `scripts/bench bridged` run
                                 from the files in DIR, as "label<TAB>value" lines
  perf-groups PERF_DATA          where the daemon's samples went, by group
  syscalls CSV PACKETS_PER_S     `perf stat -x, -I 1000` syscall counts, per second
                                 and per packet the daemon should relay
"""

import math
import os
import random
import re
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import wave

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


def sipp_stats(path):
    """Figures from the last row of a SIPp 3.6 -trace_stat CSV, as a dict of strings."""
    try:
        with open(path) as f:
            rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    except OSError:
        rows = []
    if len(rows) < 2:  # SIPp never got going: every figure unknown
        return {k: "?" for k in ("created", "incoming", "ok", "failed", "current", "retrans",
                                 "call_len_s", "rtd_mean_ms", "rtd_std_ms", "rtd_p50_ms",
                                 "rtd_p99_ms", "rtd_max_ms")}
    head, last = rows[0], rows[-1]
    col = {name: i for i, name in enumerate(head)}

    def get(name):
        return last[col[name]] if name in col and col[name] < len(last) else "0"

    def secs(hms):  # "HH:MM:SS:uuuuuu" or "HH:MM:SS"
        parts = hms.split(":")
        if len(parts) < 3:
            return 0.0
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

    return {
        "created": get("TotalCallCreated"),
        "incoming": get("IncomingCall(C)"),
        "ok": get("SuccessfulCall(C)"),
        "failed": get("FailedCall(C)"),
        "current": get("CurrentCall"),
        "retrans": get("Retransmissions(C)"),
        "call_len_s": f"{secs(get('CallLength(C)')):.3f}",
        "rtd_mean_ms": f"{secs(get('ResponseTime1(C)')) * 1000:.1f}",
        "rtd_std_ms": f"{secs(get('ResponseTime1StDev(C)')) * 1000:.1f}",
        "rtd_p50_ms": bucket(50),
        "rtd_p99_ms": bucket(99),
        "rtd_max_ms": bucket(100),
    }


def cmd_sipp_stats(path):
    """One line of key=value from the last row of a SIPp 3.6 -trace_stat CSV."""
    st = sipp_stats(path)
    keys = ["created", "ok", "failed", "current", "retrans", "call_len_s", "rtd_mean_ms",
            "rtd_std_ms", "rtd_p50_ms", "rtd_p99_ms", "rtd_max_ms"]
    print(" ".join(f"{k}={st[k]}" for k in keys))
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


# ---- bridged: the hotline call ------------------------------------------------

RTP_PACKET = 172  # 12-byte RTP header + 20 ms of G.711
PACKETS_PER_S = 50  # one every 20 ms


def ulaw_byte(x):
    """One 16-bit sample as G.711 mu-law (ITU-T G.711, the 0x84-biased segment code)."""
    sign = 0x80 if x < 0 else 0
    x = min(abs(x), 32635) + 0x84
    exponent = min(7, max(0, (x >> 7).bit_length() - 1))
    mantissa = (x >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def cmd_ulaw(src, out):
    with wave.open(src) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            print(f"{src}: not 16-bit mono", file=sys.stderr)
            return 1
        rate = w.getframerate()
        pcm = struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes()))
    step = rate / 8000
    # A mean over each output sample's input span: enough of a low-pass for a load.
    samples = []
    n_out = int(len(pcm) / step)
    for i in range(n_out):
        a, b = int(i * step), max(int(i * step) + 1, int((i + 1) * step))
        chunk = pcm[a:b]
        samples.append(sum(chunk) // len(chunk))
    samples = samples[: len(samples) // 160 * 160]  # whole 20 ms packets
    with open(out, "wb") as f:
        f.write(bytes(ulaw_byte(x) for x in samples))
    return 0


def cmd_roster(n, hostport, out):
    """A roster of n volunteers, all on duty for key 1's station all day, every day."""
    lines = [
        "# Generated by scripts/bench bridged: one SIPp UAS plays every volunteer.",
        'timezone = "Asia/Shanghai"',
        "",
    ]
    width = max(4, len(str(n)))
    for i in range(1, n + 1):
        vid = f"v{i:0{width}d}"
        lines += [
            "[[volunteer]]",
            f'id = "{vid}"',
            f'name = "bench {vid}"',
            f'phone = "sip:{vid}@{hostport}"',
            "screen = false",
            "",
        ]
    for i in range(1, n + 1):
        vid = f"v{i:0{width}d}"
        lines += [
            "[[shift]]",
            'station = "property"',
            f'volunteer = "{vid}"',
            'days = "daily"',
            'start = "00:00"',
            'end = "24:00"',
            "",
        ]
    with open(out, "w") as f:
        f.write("\n".join(lines))
    return 0


def udp_sockets():
    """{local port on 127.0.0.1: (rx_queue bytes, drops)} from /proc/net/udp."""
    out = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) < 13:
                continue
            addr, port = fields[1].split(":")
            if addr != "0100007F":
                continue
            rxq = int(fields[4].split(":")[1], 16)
            out[int(port, 16)] = (rxq, int(fields[-1]))
    return out


def cmd_truesize():
    """Bytes of receive buffer the kernel charges per queued RTP datagram here."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    n = 32
    for _ in range(n):
        tx.sendto(b"\x80" + bytes(RTP_PACKET - 1), rx.getsockname())
    time.sleep(0.05)
    rxq, _ = udp_sockets().get(rx.getsockname()[1], (0, 0))
    print(rxq // n if rxq else 0)
    return 0


def cmd_udp_watch(out, seconds, ports):
    """Keep the last counters seen of each port's socket in `out` ("port rxq drops").

    The sockets live only as long as SIPp does, so this samples until told to stop."""
    last = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = udp_sockets()
        changed = False
        for p in ports:
            if p in now and last.get(p) != now[p]:
                last[p] = now[p]
                changed = True
        if changed:
            tmp = out + ".tmp"
            with open(tmp, "w") as f:
                for p, (rxq, drops) in sorted(last.items()):
                    f.write(f"{p} {rxq} {drops}\n")
            os.replace(tmp, out)
        time.sleep(0.5)
    return 0


LOG_LINE = re.compile(r"\b(ans|key|byeok|bye|inv|rtx) (\d*) (\d+)(?:\.\d+)? (\d+)(?:\.\d+)?")


def sipp_log(path):
    """{kind: {caller number: wall-clock seconds}} from a -trace_logs file."""
    out = {"ans": {}, "key": {}, "bye": {}, "byeok": {}, "inv": {}, "rtx": {}}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_LINE.search(line)
                if m and m.group(2):
                    kind, num = m.group(1), m.group(2)
                    if kind == "rtx":  # a count, not a time
                        out[kind][num] = out[kind].get(num, 0) + 1
                    else:
                        out[kind].setdefault(num, int(m.group(3)) + int(m.group(4)) / 1e6)
    except OSError:
        pass
    return out


def fmt_pcts(vals, unit_scale=1.0, digits=1):
    if not vals:
        return "none measured"
    v = sorted(x * unit_scale for x in vals)
    f = f"%.{digits}f"
    return (f"p50 {f % percentile(v, 50)} ms, p99 {f % percentile(v, 99)} ms, "
            f"max {f % v[-1]} ms ({len(v)} calls)")


def cmd_connect(caller_log, uas_log):
    """Milliseconds from the caller's key to the volunteer's 200, the slowest call."""
    c, u = sipp_log(caller_log), sipp_log(uas_log)
    gaps = [u["ans"][n] - t for n, t in c["key"].items() if n in u["ans"]]
    if gaps:
        print(int(max(gaps) * 1000))
    return 0


def media_reached(watch_file, port, truesize):
    """Datagrams that reached SIPp's unread media socket: dropped + still queued."""
    try:
        with open(watch_file) as f:
            for line in f:
                p, rxq, drops = (int(x) for x in line.split())
                if p == port:
                    return drops + (rxq // truesize if truesize else 0), drops, rxq
    except (OSError, ValueError):
        pass
    return None, None, None


# A row of SIPp's scenario screen: "INVITE ---------->  300  0 ..." for a UAC,
# "----------> INVITE  300  1 ..." for a UAS (the arrow first, pointing the
# other way); the columns are Messages, Retrans, ...
SCREEN_ROW = re.compile(r"^\s*(?:(\S+)\s+)?(<-{5,}|-{5,}>)\s+(\S+)?\s*(?:[A-Z]-RTD\d+\s+)?"
                        r"(\d+)\s+(\d+)")


def sipp_retrans(path):
    """(sent, received) retransmissions from the last scenario screen of sipp.out."""
    sent = received = 0
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return "?", "?"
    last = text.rfind("Scenario Screen")
    for line in text[last:].splitlines():
        m = re.match(r"^\s*(\S+)\s+(<-{5,}|-{5,}>)\s+(?:[A-Z]-RTD\d+\s+)?(\d+)\s+(\d+)", line)
        if m:  # UAC row: the arrow points where the message goes
            outgoing = m.group(2).endswith(">")
        else:
            m = re.match(r"^\s*(<-{5,}|-{5,}>)\s+\S+\s+(?:[A-Z]-RTD\d+\s+)?(\d+)\s+(\d+)", line)
            if not m:
                continue
            outgoing = m.group(1).startswith("<")  # UAS row: "<--- 180" is sent
        retrans = int(m.groups()[-1])
        if outgoing:
            sent += retrans
        else:
            received += retrans
    return sent, received


def proc_stat_busy(before, after):
    """Share of all cores' time not idle between two copies of /proc/stat's first line."""
    try:
        with open(before) as f:
            a = [int(x) for x in f.read().split()[1:]]
        with open(after) as f:
            b = [int(x) for x in f.read().split()[1:]]
    except (OSError, ValueError):
        return "?"
    delta = [y - x for x, y in zip(a, b)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
    idle = delta[3] + delta[4]
    return f"{100 * (total - idle) / total:.0f}%" if total else "?"


def cmd_bridged(d, kv):
    """The figures of one bridged run, "label<TAB>value" per line."""
    caller = sipp_stats(os.path.join(d, "caller", "sipp_stats.csv"))
    uas = sipp_stats(os.path.join(d, "uas", "sipp_stats.csv"))
    clog = sipp_log(os.path.join(d, "caller", "logs.log"))
    ulog = sipp_log(os.path.join(d, "uas", "logs.log"))
    ok = int(caller["ok"]) if caller["ok"].isdigit() else 0
    out = []

    def add(label, value):
        out.append(f"{label}\t{value}")

    c_sent, c_recv = sipp_retrans(os.path.join(d, "caller", "sipp.out"))
    u_sent, u_recv = sipp_retrans(os.path.join(d, "uas", "sipp.out"))
    u_rtx = sum(ulog["rtx"].values())
    add("calls: caller side (SIPp UAC)",
        f"{caller['created']} placed, {caller['ok']} completed, {caller['failed']} failed")
    add("calls: volunteer side (SIPp UAS)",
        f"{uas['incoming']} rung, {uas['ok']} completed, {uas['failed']} failed")
    add("retransmissions, caller side",
        f"{c_sent} sent by the caller (INVITE/BYE again: the daemon slow to answer), "
        f"{c_recv} received from the daemon")
    add("retransmissions, volunteer side",
        f"{u_recv + u_rtx} received from the daemon (INVITE/ACK/BYE again), "
        f"{u_sent} sent by the volunteer")
    i2a = [clog["ans"][n] - t for n, t in clog["inv"].items() if n in clog["ans"]]
    add("INVITE->200 (caller)", fmt_pcts(i2a, 1000.0, 1))
    b2o = [clog["byeok"][n] - t for n, t in clog["bye"].items() if n in clog["byeok"]]
    add("BYE->200 (caller)", fmt_pcts(b2o, 1000.0, 1))
    k2i = [ulog["inv"][n] - t for n, t in clog["key"].items() if n in ulog["inv"]]
    add("key -> volunteer INVITE", fmt_pcts(k2i, 1000.0, 1)
        + f"; {len(clog['key']) - len(k2i)} keys never reached a volunteer")
    k2a = [ulog["ans"][n] - t for n, t in clog["key"].items() if n in ulog["ans"]]
    add("key -> volunteer answers (bridge)", fmt_pcts(k2a, 1000.0, 0))
    bridged = [ulog["bye"][n] - t for n, t in ulog["ans"].items() if n in ulog["bye"]]
    if bridged:
        add("bridged time per call", f"mean {sum(bridged) / len(bridged):.2f} s "
            f"(volunteer's 200 to the daemon's BYE; {len(bridged)} calls)")
    cpu = int(kv.get("cpu_ms", "0"))
    wall = int(kv.get("wall_ms", "0"))
    add("daemon CPU", f"{cpu} ms over {wall} ms wall = "
        f"{100 * cpu / max(wall, 1):.0f}% of one core")
    add("daemon CPU per completed call", f"{cpu / ok:.2f} ms" if ok else "? (no call completed)")
    placed = int(caller["created"]) if caller["created"].isdigit() else 0
    if placed and ok < placed:
        add("daemon CPU per placed call", f"{cpu / placed:.2f} ms ({placed - ok} calls not completed)")
    sipp_cpu = []
    for side in ("caller", "uas"):
        try:
            with open(os.path.join(d, side, "sipp.time")) as f:
                user, system = (float(x) for x in f.read().split()[-2:])
            sipp_cpu.append(f"{side} {1000 * (user + system) / max(wall, 1) * 100:.0f}%")
        except (OSError, ValueError):
            sipp_cpu.append(f"{side} ?")
    busy = proc_stat_busy(os.path.join(d, "stat0"), os.path.join(d, "stat1"))
    add("machine during the load", f"all cores {busy} busy; SIPp used (of one core) "
        + ", ".join(sipp_cpu) + " (a SIPp near 100% limits the load, not the daemon)")
    hwm = kv.get("hwm_kb", "")
    add("daemon peak RSS (VmHWM)", f"{int(hwm) / 1024:.1f} MB" if hwm.isdigit() else "?")
    truesize = int(kv.get("truesize", "0"))
    watch = os.path.join(d, "udp_watch.txt")
    for side, port, log, note in (
        ("caller", int(kv.get("caller_mport", "0")), clog,
         "50/s from answer to BYE: prompts, ringback, the volunteer"),
        ("volunteer", int(kv.get("uas_mport", "0")), ulog,
         "50/s from answer to BYE: the caller relayed"),
    ):
        reached, drops, rxq = media_reached(watch, port, truesize)
        spans = [log["bye"][n] - t for n, t in log["ans"].items() if n in log["bye"]]
        nominal = sum(spans) * PACKETS_PER_S
        if reached is None or not nominal:
            add(f"RTP reaching the {side}", "? (no counters or no completed call)")
            continue
        add(f"RTP reaching the {side}",
            f"{reached} of nominal {nominal:.0f} = {100 * reached / nominal:.2f}% "
            f"({note}; kernel counters of SIPp's media socket {port})")
    print("\n".join(out))
    return 0


# ---- perf: where the daemon's samples went ------------------------------------

# Syscalls by what they do for the daemon; the kernel frames under them count there.
SYSCALL_GROUPS = [
    (re.compile(r"sys_(sendto|sendmsg|sendmmsg)\b"), "kernel UDP send (incl. loopback delivery)"),
    (re.compile(r"sys_(recvfrom|recvmsg|recvmmsg)\b"), "kernel UDP recv"),
    (re.compile(r"sys_epoll_(p?wait|wait2)\b"), "epoll/reactor"),
    (re.compile(r"sys_futex\b"), "futex (park/unpark, locks)"),
    (re.compile(r"sys_(write|writev|pwrite64|fsync|fdatasync|pread64|read|openat|lseek)\b"),
     "file I/O (logs, SQLite)"),
    (re.compile(r"sys_(clock_nanosleep|nanosleep|sched_yield)\b"), "sleep/yield"),
]
# User-space symbols, first match wins: the leaf's group, or for a leaf of no
# group (an inlined Arc clone, an atomic, a memcpy) the first framed caller's.
RELAY = "our relay/rewrite (media::session::receive, relay, rtp)"
USER_GROUPS = [
    (re.compile(r"sqlite3|rusqlite|sqlx"), "SQLite"),
    (re.compile(r"\b(malloc|free|realloc|calloc|cfree|_int_malloc|_int_free|_int_realloc|"
                r"malloc_consolidate|tcache|__libc_malloc|__libc_free|__rust_alloc|"
                r"__rust_dealloc|__rust_realloc|alloc::alloc::|alloc::raw_vec|unlink_chunk)"),
     "allocation"),
    (re.compile(r"pthread_mutex|std::sync::.*[Mm]utex|futex::Mutex|parking_lot|lock_contended|"
                r"RawMutex|std::sys::sync::mutex|MutexGuard"), "mutex"),
    (re.compile(r"\b(__libc_sendto|__send|sendto|__sendmmsg|sendmsg)\b"),
     "kernel UDP send (incl. loopback delivery)"),
    (re.compile(r"\b(__libc_recvfrom|recvfrom|__recvmmsg|recvmsg)\b"), "kernel UDP recv"),
    (re.compile(r"hotline::media::dtmf::(goertzel|analyse_block|InbandDetector)"),
     "in-band DTMF detector (legs without telephone-event)"),
    (re.compile(r"hotline::media::socket|hotline::media::clock::StreamTx::relay_target"), RELAY),
    (re.compile(r"hotline::media::(relay|rtp)|hotline::media::session::receive"), RELAY),
    (re.compile(r"hotline::media::"), "our media clock/prompts/codec"),
    (re.compile(r"hotline::store"), "our store (call records)"),
    (re.compile(r"hotline::(sip|call)|rsip|rsipstack|nom::|httparse"), "SIP and call flow"),
    (re.compile(r"epoll_wait|mio::|tokio::runtime::io|tokio::io::|tokio::net::"), "epoll/reactor"),
    (re.compile(r"tokio::runtime::time|tokio::time"), "tokio timers"),
    (re.compile(r"tokio::|futures_util::|futures::|std::thread|crossbeam"), "tokio scheduling"),
    (re.compile(r"hotline::"), "hotline, other"),
    (re.compile(r"tracing|tracing_subscriber"), "logging (tracing)"),
]
GENERIC = re.compile(r"^(core::|<core::|alloc::sync|<alloc::sync|__memcpy|__memmove|__memset|"
                     r"memcpy|memmove|memset|__memcmp|bcmp|memcmp|\[unknown\])")
KERNEL_SCHED = re.compile(r"\b(schedule|__schedule|finish_task_switch|pick_next|"
                          r"try_to_wake_up|__switch_to)")


def classify(stack):
    """One sample's group from its frames (leaf first): (group, leaf symbol)."""
    leaf_sym, leaf_dso = stack[0]
    for sym, _ in stack:
        for rx, group in SYSCALL_GROUPS:
            if rx.search(sym):
                return group, leaf_sym
    if leaf_dso.startswith("[") and leaf_dso != "[unknown]":
        if any(KERNEL_SCHED.search(s) for s, _ in stack):
            return "kernel scheduler (other)", leaf_sym
        return "kernel, other (irq, softirq, page faults)", leaf_sym
    frames = [leaf_sym] if not GENERIC.search(leaf_sym) else [s for s, _ in stack]
    for sym in frames:
        if GENERIC.search(sym) and sym is not leaf_sym:
            continue
        for rx, group in USER_GROUPS:
            if rx.search(sym):
                return group, leaf_sym
    return "user, other", leaf_sym


def origin(stack):
    """The first hotline frame outside the socket wrapper: who made this syscall."""
    for sym, _ in stack:
        if sym.startswith("hotline::") and not sym.startswith("hotline::media::socket"):
            return re.sub(r"::\{\{closure\}\}.*$|::h[0-9a-f]{16}$", "", sym)
    return "(no hotline frame)"


def cmd_perf_groups(path):
    """perf script over a `perf record -g` file: share of samples per group and top leaves."""
    try:
        proc = subprocess.run(
            ["perf", "script", "-i", path, "-F", "comm,period,ip,sym,dso"],
            capture_output=True, text=True, errors="replace", timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"perf script failed: {e}")
        return 1
    groups, leaves, callers, comms, origins = {}, {}, {}, {}, {}
    total = 0
    stack, comm = [], None
    frame = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")

    def flush():
        nonlocal total
        if not stack:
            return
        group, leaf = classify(stack)
        total += 1
        groups[group] = groups.get(group, 0) + 1
        leaves[(leaf, group)] = leaves.get((leaf, group), 0) + 1
        comms[comm] = comms.get(comm, 0) + 1
        if group.startswith("kernel UDP"):
            who = origin(stack)
            callers[(group, who)] = callers.get((group, who), 0) + 1
        for fn in {re.sub(r"::\{\{closure\}\}.*$|::h[0-9a-f]{16}$", "", sym)
                   for sym, _ in stack if sym.startswith("hotline::")}:
            origins[fn] = origins.get(fn, 0) + 1

    for line in proc.stdout.splitlines():
        if not line.strip():
            flush()
            stack = []
            continue
        m = frame.match(line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            stack.append((sym, os.path.basename(m.group(2))))
        elif not line.startswith((" ", "\t")):
            flush()
            stack = []
            comm = line.split()[0] if line.split() else "?"
    flush()
    if not total:
        print("no samples")
        return 1
    print(f"samples: {total} (by thread: " + ", ".join(
        f"{c} {100 * n / total:.0f}%" for c, n in sorted(comms.items(), key=lambda x: -x[1])[:4]) + ")")
    print("groups (share of the daemon's samples; kernel work under a syscall counts for it):")
    for g, n in sorted(groups.items(), key=lambda x: -x[1]):
        print(f"  {100 * n / total:5.1f}%  {g}")
    print("top leaf functions (self):")
    for (leaf, g), n in sorted(leaves.items(), key=lambda x: -x[1])[:25]:
        short = re.sub(r"::h[0-9a-f]{16}$", "", leaf)
        print(f"  {100 * n / total:5.1f}%  {short[:90]}  [{g}]")
    if callers:
        print("UDP syscalls by the hotline function that made them:")
        for (g, who), n in sorted(callers.items(), key=lambda x: -x[1])[:10]:
            print(f"  {100 * n / total:5.1f}%  {g.split(' (')[0]} <- {who[:90]}")
    print("samples with this hotline function on the stack (inclusive):")
    for who, n in sorted(origins.items(), key=lambda x: -x[1])[:8]:
        print(f"  {100 * n / total:5.1f}%  {who[:90]}")
    return 0


def cmd_syscalls(path, relayed_per_s):
    """`perf stat -x, -I 1000` of syscall tracepoints: per second (the mean of the
    whole 1 s intervals after the first, which starts as perf attaches) and per
    packet the daemon should relay."""
    per_interval = {}  # interval end (s) -> {name: count}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if line.startswith("#") or len(parts) < 4 or not parts[1].isdigit():
                continue
            name = parts[3].replace("syscalls:sys_enter_", "").replace("syscalls:sys_exit_", "exit_")
            if name == "exit_recvfrom":
                name = "recvfrom EAGAIN"
            row = per_interval.setdefault(parts[0], {})
            row[name] = row.get(name, 0) + int(parts[1])
    ends = sorted(per_interval, key=float)
    # Whole intervals only: not the first (perf attaching) nor a short last one.
    rows = [(per_interval[b], float(b) - float(a)) for a, b in zip(ends, ends[1:])
            if float(b) - float(a) >= 0.9]
    per = float(relayed_per_s) or 1.0
    if not rows:
        print("no syscall counts")
        return 1
    names = {n for r, _ in rows for n in r}
    secs = sum(d for _, d in rows)
    mean = {n: sum(r.get(n, 0) for r, _ in rows) / secs for n in names}
    for name, n in sorted(mean.items(), key=lambda x: -x[1]):
        print(f"  {name:16s} {n:9.0f}/s  {n / per:5.2f} per packet to relay")
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
    if cmd == "ulaw":
        return cmd_ulaw(args[0], args[1])
    if cmd == "roster":
        return cmd_roster(int(args[0]), args[1], args[2])
    if cmd == "truesize":
        return cmd_truesize()
    if cmd == "udp-watch":
        return cmd_udp_watch(args[0], float(args[1]), [int(p) for p in args[2:]])
    if cmd == "connect":
        return cmd_connect(args[0], args[1])
    if cmd == "bridged":
        return cmd_bridged(args[0], dict(a.split("=", 1) for a in args[1:] if "=" in a))
    if cmd == "syscalls":
        return cmd_syscalls(args[0], args[1])
    if cmd == "perf-groups":
        return cmd_perf_groups(args[0])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
