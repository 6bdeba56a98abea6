#!/usr/bin/env python3
"""Side-by-side benchmarks of offload against rsync and rclone on the same disk.

Each scenario runs every tool in turn, several rounds, with the page cache dropped
before each timed run when running as root, and reports medians, ratios and peak RSS
(from wait4's rusage) in BENCHMARKS.md. Timing lives here, never in the tests: the
machines are shared and noisy, so only side-by-side ratios of medians mean anything.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def drop_caches():
    subprocess.run(["sync"], check=True)
    if os.geteuid() == 0:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError:
            pass


def timed(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS in MiB). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"benchmark command failed ({code}): {' '.join(cmd)}\n{err}")
    return elapsed, ru.ru_maxrss / 1024.0


def made_with(roll, params):
    """True when `roll` was generated completely with these parameters."""
    try:
        with open(roll + ".done") as f:
            return f.read() == params
    except OSError:
        return False


def mark_made(roll, params):
    with open(roll + ".done", "w") as f:
        f.write(params)


def tools(offload, src, dst):
    env = dict(os.environ, TZ="UTC")
    return {
        "offload backup": ([offload, "backup", "--from", src, "--to", dst], env),
        "rsync -a --fsync": (["rsync", "-a", "--fsync", src + "/", dst + "/"], env),
        "rsync -a": (["rsync", "-a", src + "/", dst + "/"], env),
        "rclone copy": (["rclone", "--config", "/dev/null", "copy", src, dst], env),
        # The floor of any durable copy on this disk: copy, then flush the filesystem.
        "cp -a + sync -f": (["sh", "-c", 'mkdir -p "$2" && cp -a "$1/." "$2/" && sync -f "$2"',
                             "sh", src, dst], env),
    }


def table(title, rows, base, note):
    lines = [f"### {title}", "", note, "",
             "| tool | median s | min s | max s | runs | offload time / tool time | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    b = statistics.median(rows[base][0])
    for name, (secs, rss) in rows.items():
        med = statistics.median(secs)
        lines.append(f"| {name} | {med:.2f} | {min(secs):.2f} | {max(secs):.2f} | {len(secs)} | "
                     f"{b / med:.2f} | {max(rss):.0f} |")
    return "\n".join(lines) + "\n"


def ram_dir(work, need):
    """A fresh folder in RAM (tmpfs) with room for `need` bytes and some to spare, or
    (None, why not). Phone benchmarks copy there as well as onto the disk: with the
    destination in RAM the bare read loops measure the transport's ceiling, not how fast
    this disk takes writes."""
    base = "/dev/shm"
    try:
        kind = subprocess.run(["stat", "-f", "-c", "%T", base], capture_output=True,
                              text=True, check=True).stdout.strip()
        st = os.statvfs(base)
    except (OSError, subprocess.CalledProcessError) as e:
        return None, f"{base} cannot be used ({e})"
    if kind != "tmpfs":
        return None, f"{base} is {kind}, not tmpfs"
    free = st.f_bavail * st.f_frsize
    if free < need * 1.2:
        return None, f"{base} has {free / 1e9:.1f} GB free, {need * 1.2 / 1e9:.1f} GB needed"
    path = os.path.join(base, f"offload-bench-{os.getpid()}-{os.path.basename(work)}")
    os.makedirs(path, exist_ok=True)
    return path, None


def verdict(ok):
    return "met" if ok else "**not met**"


def first_run(args, work, offload, summary):
    src = os.path.join(work, "roll-first")
    params = f"{args.photos} {args.photo_size} {args.videos} {args.video_size}"
    if not made_with(src, params):
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run([offload, "sim", "roll", "--kind", "bulk", "--dir", src,
                        "--photos", str(args.photos), "--photo-size", str(args.photo_size),
                        "--videos", str(args.videos), "--video-size", str(args.video_size)],
                       check=True, stdout=subprocess.DEVNULL)
        mark_made(src, params)
    rows = {}
    for r in range(args.rounds):
        for name, (cmd_fn) in tools(offload, src, os.path.join(work, "dst")).items():
            dst = os.path.join(work, "dst")
            shutil.rmtree(dst, ignore_errors=True)
            drop_caches()
            cmd, env = cmd_fn
            secs, rss = timed(cmd, env)
            rows.setdefault(name, ([], []))
            rows[name][0].append(secs)
            rows[name][1].append(rss)
            print(f"first run, round {r + 1}: {name}: {secs:.2f} s, {rss:.0f} MiB", flush=True)
    shutil.rmtree(os.path.join(work, "dst"), ignore_errors=True)
    total = args.photos * args.photo_size + args.videos * args.video_size
    med = {k: statistics.median(v[0]) for k, v in rows.items()}
    ours = med["offload backup"]
    rss = max(rows["offload backup"][1])
    summary += [
        ("first run ≤ 0.9× the time of `rsync -a --fsync`",
         f"{ours / med['rsync -a --fsync']:.2f}× ({ours:.2f} s vs {med['rsync -a --fsync']:.2f} s, "
         f"{total / 1e9:.2f} GB)", verdict(ours <= 0.9 * med["rsync -a --fsync"])),
        ("first run ≤ 1.5× the time of plain `rsync -a`",
         f"{ours / med['rsync -a']:.2f}× ({ours:.2f} s vs {med['rsync -a']:.2f} s)",
         verdict(ours <= 1.5 * med["rsync -a"])),
        ("first run peak RSS ≤ 64 MiB", f"{rss:.0f} MiB", verdict(rss <= 64)),
    ]
    return table(
        "First run: copy a new camera roll",
        rows, "offload backup",
        f"{args.photos} photos of {args.photo_size / 1e6:g} MB and {args.videos} videos of "
        f"{args.video_size / 1e6:g} MB ({total / 1e9:.2f} GB), same disk, page cache dropped "
        f"before each run; medians of {args.rounds} rounds. The ratio is offload's time divided by the tool's: below 1 means offload is faster. "
        "offload, `rsync --fsync` and `cp -a + sync -f` leave the data durable; plain rsync and "
        "rclone leave it in the page cache. `cp -a + sync -f` is the floor for any durable copy "
        "on this disk.")


def noop_rerun(args, work, offload, summary):
    src = os.path.join(work, "roll-noop")
    if not made_with(src, str(args.noop_files)):
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run([offload, "sim", "roll", "--kind", "bulk", "--dir", src,
                        "--photos", str(args.noop_files), "--photo-size", "4096",
                        "--videos", "0"], check=True, stdout=subprocess.DEVNULL)
        mark_made(src, str(args.noop_files))
    rows = {}
    for name in tools(offload, src, "").keys():
        if name in ("rsync -a --fsync", "cp -a + sync -f"):
            continue
        dst = os.path.join(work, "noop-" + name.split()[0])
        shutil.rmtree(dst, ignore_errors=True)
        cmd, env = tools(offload, src, dst)[name]
        timed(cmd, env)  # the first, copying run
        rows[name] = ([], [])
    for r in range(args.rounds):
        for name in rows:
            dst = os.path.join(work, "noop-" + name.split()[0])
            cmd, env = tools(offload, src, dst)[name]
            drop_caches()
            secs, rss = timed(cmd, env)
            rows[name][0].append(secs)
            rows[name][1].append(rss)
            print(f"no-op rerun, round {r + 1}: {name}: {secs:.2f} s, {rss:.0f} MiB", flush=True)
    for name in rows:
        shutil.rmtree(os.path.join(work, "noop-" + name.split()[0]), ignore_errors=True)
    ours = statistics.median(rows["offload backup"][0])
    theirs = statistics.median(rows["rsync -a"][0])
    summary.append((f"no-op rerun on {args.noop_files:,} files ≤ 1.0× `rsync -a`",
                    f"{ours / theirs:.2f}× ({ours:.2f} s vs {theirs:.2f} s)",
                    verdict(ours <= theirs)))
    return table(
        "No-op rerun: nothing is new",
        rows, "offload backup",
        f"{args.noop_files} files already backed up; page cache dropped before each run; "
        f"medians of {args.rounds} rounds. The ratio is offload's time divided by the tool's: below 1 means offload is faster.")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-out"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--photo-size", type=int, default=2_000_000)
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--video-size", type=int, default=100_000_000)
    ap.add_argument("--noop-files", type=int, default=20_000)
    ap.add_argument("--only", choices=["first", "noop", "android", "iphone"], action="append")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = ap.parse_args()
    for t in ["rsync", "rclone"]:
        if shutil.which(t) is None:
            sys.exit(f"{t} is not installed (Debian: apt-get install {t})")
    offload = os.path.join(ROOT, "target", "release", "offload")
    os.makedirs(args.work, exist_ok=True)
    sections = []
    # (target, what was measured, verdict) for the summary at the top.
    summary = []
    only = args.only or ["first", "noop", "android", "iphone"]
    if "first" in only:
        sections.append(first_run(args, args.work, offload, summary))
    if "noop" in only:
        sections.append(noop_rerun(args, args.work, offload, summary))
    # Phone scenarios live in their own files: scripts/bench_android.py, bench_iphone.py,
    # each with `run(args, work, offload) -> (markdown section, summary rows)`.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for phone in ["android", "iphone"]:
        if phone in only:
            module = __import__(f"bench_{phone}")
            text, rows = module.run(args, args.work, offload)
            sections.append(text)
            summary += rows
    cpu = subprocess.run(["sh", "-c", "nproc; uname -r; df -hT " + args.work + " | tail -1"],
                         capture_output=True, text=True).stdout.split("\n")
    head = ("# Benchmarks\n\nWritten by `scripts/bench.sh` on "
            f"{time.strftime('%Y-%m-%d')}: {cpu[0]} cores, kernel {cpu[1]}, disk `{cpu[2].strip()}`.\n"
            "Peak RSS is the largest resident set of the tool's process tree leader (wait4).\n\n")
    head += ("## Summary against the targets\n\nMedians of runs made side by side, in "
             "alternating order, in this one invocation.\n\n| target | measured | |\n|---|---|---|\n")
    head += "".join(f"| {t} | {m} | {v} |\n" for t, m, v in summary) + "\n"
    with open(args.out, "w") as f:
        f.write(head + "\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
