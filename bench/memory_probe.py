#!/usr/bin/env python3
"""The mount's memory, stage by stage (issue 13, item 9): add the Rust sysroot to
an embedded store in DATA (once), serve it over gRPC on loopback, mount it with a
cold cache, then print the mount's VmHWM/VmRSS and threads after `rustc --version`,
after walking every entry, after reading every file once (MODE=serial), and after
64 concurrent readers (MODE=par; default both).

Usage: bench/memory_probe.py path/to/release/storefs DATA_DIR [mount flags…]
A figure, not a test: it asserts nothing."""
import os, sys, subprocess, time, json, random, tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sf = sys.argv[1]; data = sys.argv[2]; extra = sys.argv[3:]
port = 7391
env = dict(os.environ, STOREFS_DATA=data)
def st(pid, key):
    for l in Path(f"/proc/{pid}/status").read_text().splitlines():
        if l.startswith(key + ":"): return l.split()[1]
sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
if not (Path(data)/"path").exists():
    p = subprocess.check_output([sf, "add", "--name", "rust-sysroot", sysroot], env=env, text=True).strip()
    Path(data, "path").write_text(p)
path = Path(data, "path").read_text().strip()
serve = subprocess.Popen([sf, "serve", "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        if subprocess.run([sf, "--store", f"grpc://127.0.0.1:{port}", "info", path], env=env, capture_output=True).returncode == 0: break
        time.sleep(0.1)
    w = tempfile.mkdtemp(); mnt = Path(w, "mnt"); mnt.mkdir()
    m = subprocess.Popen([sf, "--store", f"grpc://127.0.0.1:{port}", "mount", str(mnt), "--cache", f"{w}/cache", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m.stdout.readline()
    def show(tag):
        mb = lambda k: int(st(m.pid, k)) / 1024
        print(f"{tag:30} HWM {mb('VmHWM'):7.1f} MB  RSS {mb('VmRSS'):7.1f} MB "
              f"(anon {mb('RssAnon'):6.1f}, file {mb('RssFile'):5.1f})  threads {st(m.pid,'Threads')}", flush=True)
    show("mounted")
    root = mnt / Path(path).name
    subprocess.run([str(root/"bin/rustc"), "--version"], check=True); show("rustc --version")
    files = []
    for dp, dn, fn in os.walk(root):
        for f in fn:
            p = Path(dp, f)
            if not p.is_symlink(): files.append(p)
    show(f"walk ({len(files)} files)")
    mode = os.environ.get("MODE", "both")
    if mode in ("both", "serial"):
        tot = 0
        for p in files:
            with open(p, "rb") as fh:
                while b := fh.read(1 << 20): tot += len(b)
        show(f"serial read {tot/1e6:.0f} MB")
    if mode in ("both", "par"):
        random.Random(7).shuffle(files)
        def rd(p):
            n = 0
            with open(p, "rb") as fh:
                while b := fh.read(1 << 20): n += len(b)
            return n
        with ThreadPoolExecutor(64) as ex: tot = sum(ex.map(rd, files))
        show(f"64 readers {tot/1e6:.0f} MB")
    s = json.loads(os.getxattr(mnt, "user.storefs.stats")); print({k: s[k] for k in list(s)[:40]})
    m.terminate(); m.wait()
    subprocess.run(["rm", "-rf", w])
finally:
    serve.terminate(); serve.wait()
