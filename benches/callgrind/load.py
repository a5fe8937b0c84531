#!/usr/bin/env python3
"""Load for benches/callgrind/run.sh: N keep-alive GET PATH requests on one connection, 16 pipelined."""
import socket, sys
port=int(sys.argv[1]); n=int(sys.argv[2]); path=sys.argv[3]
s=socket.create_connection(("127.0.0.1",port)); s.settimeout(30)
req=f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
buf=b""; done=0
batch=16
while done<n:
    k=min(batch,n-done)
    s.sendall(req*k)
    got=0
    while got<k:
        d=s.recv(65536)
        if not d: raise SystemExit("closed")
        buf+=d
        while True:
            i=buf.find(b"\r\n\r\n")
            if i<0: break
            head=buf[:i].decode()
            cl=0
            for line in head.split("\r\n"):
                if line.lower().startswith("content-length:"): cl=int(line.split(":")[1])
            if len(buf)<i+4+cl: break
            buf=buf[i+4+cl:]; got+=1
    done+=k
