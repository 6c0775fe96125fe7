"""Plain-socket probes of the NAT topology that nat.sh builds, so that the
NAT routers' behaviour is tested by itself, apart from parley.

  natprobe.py echo PORT...            UDP and TCP on each PORT: answer every
                                      datagram / connection with the sender's
                                      address as seen here ("ip:port"); runs
                                      until killed
  natprobe.py tcp HOST PORT [SRC]     connect (from port SRC), print what the
                                      echo saw; exit 1 if no connection in 1 s
  natprobe.py udp HOST PORT [SRC]     the same over UDP
  natprobe.py open SRC HOST PORT S    send one datagram from SRC to HOST:PORT,
                                      then print "from ip:port" for every
                                      datagram received on SRC for S seconds
  natprobe.py send SRC HOST PORT      send one datagram from SRC to HOST:PORT
  natprobe.py rtt HOST PORT N         the median round trip in ms of N
                                      datagrams to the echo at HOST:PORT
  natprobe.py punch SRC STUN PORT MINE THEIRS S
                                      UDP hole punch: learn SRC's public
                                      address from the echo at STUN:PORT,
                                      write it to the file MINE, wait for the
                                      file THEIRS, then send to that address
                                      every 50 ms; exit 0 once a datagram from
                                      the peer's IP arrives, 1 after S seconds
"""

import os
import select
import socket
import sys
import time


def addr(a):
    return "%s:%d" % (a[0], a[1])


def bound(kind, src):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", int(src)))
    return s


def echo(ports):
    socks = []
    for p in ports:
        socks.append(bound(socket.SOCK_DGRAM, p))
        t = bound(socket.SOCK_STREAM, p)
        t.listen(16)
        socks.append(t)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            if s.type == socket.SOCK_DGRAM:
                data, peer = s.recvfrom(2048)
                if data != b"quiet":
                    s.sendto(addr(peer).encode(), peer)
                print("udp %d from %s" % (s.getsockname()[1], addr(peer)), flush=True)
            else:
                c, peer = s.accept()
                c.sendall(addr(peer).encode())
                c.close()
                print("tcp %d from %s" % (s.getsockname()[1], addr(peer)), flush=True)


def tcp(host, port, src=0):
    s = bound(socket.SOCK_STREAM, src)
    s.settimeout(1)
    try:
        s.connect((host, int(port)))
        print(s.recv(64).decode())
    except OSError as e:
        print("no connection: %s" % e)
        return 1
    return 0


def udp(host, port, src=0):
    s = bound(socket.SOCK_DGRAM, src)
    s.settimeout(1)
    s.sendto(b"?", (host, int(port)))
    try:
        print(s.recv(64).decode())
    except OSError as e:
        print("no answer: %s" % e)
        return 1
    return 0


def open_(src, host, port, secs):
    s = bound(socket.SOCK_DGRAM, src)
    s.sendto(b"?", (host, int(port)))
    print("ready", flush=True)
    end = time.time() + float(secs)
    while time.time() < end:
        if select.select([s], [], [], max(0, end - time.time()))[0]:
            _, peer = s.recvfrom(2048)
            print("from %s" % addr(peer), flush=True)
    return 0


def send(src, host, port):
    s = bound(socket.SOCK_DGRAM, src)
    s.sendto(b"quiet", (host, int(port)))
    return 0


def rtt(host, port, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    times = []
    for _ in range(int(n)):
        t0 = time.perf_counter()
        s.sendto(b"?", (host, int(port)))
        s.recv(64)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print("%.2f" % times[len(times) // 2])
    return 0


def punch(src, stun, port, mine, theirs, secs):
    s = bound(socket.SOCK_DGRAM, src)
    s.settimeout(1)
    s.sendto(b"?", (stun, int(port)))
    me = s.recv(64).decode()
    with open(mine + ".tmp", "w") as f:
        f.write(me)
    os.rename(mine + ".tmp", mine)
    end = time.time() + float(secs)
    while not os.path.exists(theirs):
        if time.time() > end:
            print("no peer address in %s" % theirs)
            return 1
        time.sleep(0.02)
    with open(theirs) as f:
        ip, p = f.read().split(":")
    peer = (ip, int(p))
    print("public %s, punching to %s" % (me, addr(peer)), flush=True)
    s.setblocking(False)
    while time.time() < end:
        s.sendto(b"punch", peer)
        if select.select([s], [], [], 0.05)[0]:
            data, frm = s.recvfrom(2048)
            if frm[0] == ip and data == b"punch":
                # A few more, so that the peer sees one too.
                for _ in range(5):
                    s.sendto(b"punch", frm)
                    time.sleep(0.02)
                print("punched: heard %s" % addr(frm))
                return 0
    print("not punched in %s s" % secs)
    return 1


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "echo":
        echo(args)
    return {"tcp": tcp, "udp": udp, "open": open_, "send": send, "rtt": rtt, "punch": punch}[cmd](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
