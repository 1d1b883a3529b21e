#!/usr/bin/env python3
"""Runs every `cargo run` line of the ```sh blocks in README.md and docs/*.md, in order, from the repo root,
with the debug build of `mmea` (already built by `cargo test`), on the CPU, with every training cut to one
epoch. A documented command that fails fails CI. Usage: python3 .ci/doc-commands.py [BIN]"""
import glob, os, re, shlex, subprocess, sys, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
bin_ = sys.argv[1] if len(sys.argv) > 1 else "target/debug/mmea"
files = ["README.md"] + sorted(glob.glob("docs/*.md"))
commands = []
for f in files:
    in_sh = False
    for n, line in enumerate(open(f, encoding="utf-8"), 1):
        s = line.strip()
        if s.startswith("```"):
            in_sh = (not in_sh) and s in ("```sh", "```bash")
            continue
        if in_sh and s.startswith("cargo run"):
            commands.append((f, n, s))
if not commands:
    sys.exit("no documented commands found")
failed = 0
for f, n, cmd in commands:
    words = shlex.split(cmd, comments=True)
    # `cargo run --release [-- ARGS]` -> `mmea ARGS`
    rest = words[words.index("--") + 1:] if "--" in words else []
    args = ["--backend", "cpu"] + rest
    is_train = not rest or rest[0] == "train"
    if is_train:
        if not rest:
            args += ["train"]
        if "--epochs" in args:
            args[args.index("--epochs") + 1] = "1"
        elif "--resume" not in args and "--print-config" not in args:
            args += ["--epochs", "1"]
        if "--print-config" not in args:
            args += ["--quiet"]
    t0 = time.time()
    p = subprocess.run([bin_] + args, capture_output=True, text=True)
    dt = time.time() - t0
    status = "ok" if p.returncode == 0 else f"FAILED (exit {p.returncode})"
    print(f"{f}:{n}: {cmd}\n    ran: mmea {' '.join(args)}  [{dt:.1f} s] {status}")
    if p.returncode != 0:
        failed += 1
        print((p.stdout + p.stderr)[-3000:])
print(f"docs: {len(commands) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
