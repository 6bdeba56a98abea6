"""iPhone benchmarks: `offload backup` against a bare idevice AFC read loop, side by side on
the same virtual iPhone (`offload sim iphone`), and the listing time of 20,000 files.

Called by scripts/bench.py (`--only iphone`) as run(args, work, offload). The baseline is
the cargo example `examples/afc_read_loop.rs` (usbmuxd → pair record → lockdown session →
AFC, recursive listing of /DCIM, 4 MiB reads written to a folder, nothing else), built
here in release mode. Both clients talk to one simulator that serves the same roll, in
alternating order, page cache dropped before each timed run when running as root. Each
copies onto the disk (the loop plain and with one syncfs at the end) and, where /dev/shm
is a tmpfs with room, into RAM, where the loop measures the transport's ceiling.

Sizes come from bench.py's options: photos `--photos` (default 1000) of `--photo-size`,
1.5x and 2x that (2, 3 and 4 MB by default), and `--videos // 3` videos (at least one) of
`--video-size`, 2x and 3x (100, 200 and 300 MB); the listing scenario serves
`--noop-files` (default 20,000) small files. Smaller values make a quick check, e.g.
`--photos 30 --photo-size 200000 --videos 3 --video-size 5000000 --noop-files 2000`.
"""
import os
import shutil
import statistics
import subprocess
import sys

from bench import ROOT, drop_caches, ram_dir, table, timed, verdict


class Sim:
    """`offload sim iphone --dir DIR` on a free local port, stopped on exit."""

    def __init__(self, offload, directory):
        self.cmd = [offload, "sim", "iphone", "--dir", directory, "--listen", "127.0.0.1:0"]

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            sys.exit(f"the virtual iPhone did not start: {line!r}")
        addr, udid = line[len("listening on "):].split(" udid=")
        self.addr, self.udid = addr, udid
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def build_loop():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "afc_read_loop"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "examples", "afc_read_loop")


def gen_roll(offload, root, parts):
    """Writes an iPhone-like roll: each part (photos, photo bytes, videos, video bytes) is a
    bulk roll of its own seed whose folders become DCIM/100APPLE, 101APPLE... in turn, so
    that names restart at IMG_0001 in the next folder as on a phone."""
    stamp = os.path.join(root, ".done")
    want = repr(parts)
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "DCIM"))
    folder = 100
    for i, (photos, photo_size, videos, video_size) in enumerate(parts):
        tmp = os.path.join(root, f"part{i}")
        subprocess.run([offload, "sim", "roll", "--kind", "bulk", "--dir", tmp,
                        "--seed", str(i + 1),
                        "--photos", str(photos), "--photo-size", str(photo_size),
                        "--videos", str(videos), "--video-size", str(video_size)],
                       check=True, stdout=subprocess.DEVNULL)
        for sub in sorted(os.listdir(os.path.join(tmp, "DCIM"))):
            os.rename(os.path.join(tmp, "DCIM", sub),
                      os.path.join(root, "DCIM", f"{folder}APPLE"))
            folder += 1
        shutil.rmtree(tmp)
    with open(stamp, "w") as f:
        f.write(want)


def roll_bytes(root):
    total = files = 0
    for d, _, names in os.walk(os.path.join(root, "DCIM")):
        for n in names:
            total += os.path.getsize(os.path.join(d, n))
            files += 1
    return files, total


def side_by_side(rounds, runs, label):
    """Runs each (name, cmd, env, out_dir) `rounds` times, alternating the order; returns
    bench.table rows."""
    rows = {name: ([], []) for name, *_ in runs}
    for r in range(rounds):
        order = runs if r % 2 == 0 else list(reversed(runs))
        for name, cmd, env, out in order:
            # Every run's copy goes first, not only this one's: a copy left in RAM (tmpfs)
            # would make the next run start on memory this machine has never touched, which
            # on a virtual machine is far slower to fill.
            for *_, o in runs:
                if o:
                    shutil.rmtree(o, ignore_errors=True)
            drop_caches()
            secs, rss = timed(cmd, env)
            rows[name][0].append(secs)
            rows[name][1].append(rss)
            print(f"{label}, round {r + 1}: {name}: {secs:.2f} s, {rss:.0f} MiB", flush=True)
        for _, _, _, out in runs:
            if out:
                shutil.rmtree(out, ignore_errors=True)
    return rows


def run(args, work, offload):
    loop = build_loop()
    home = os.path.join(work, "iphone-home")
    os.makedirs(home, exist_ok=True)

    # Throughput: the full roll.
    roll = os.path.join(work, "iphone-roll")
    n = args.photos
    n_videos = max(1, args.videos // 3)
    parts = []
    for k in range(3):
        parts.append((n // 3 + (1 if k < n % 3 else 0), args.photo_size * (2 + k) // 2,
                      n_videos // 3 + (1 if k < n_videos % 3 else 0), args.video_size * (k + 1)))
    gen_roll(offload, roll, parts)
    files, total = roll_bytes(roll)
    ram, no_ram = ram_dir(work, total)
    disk_runs = ["offload backup", "idevice AFC read loop", "idevice AFC read loop --syncfs"]
    ram_runs = ["offload backup → RAM", "idevice AFC read loop → RAM"]
    with Sim(offload, roll) as sim:
        env = dict(os.environ, TZ="UTC", HOME=home, USBMUXD_SOCKET_ADDRESS=sim.addr)
        env.pop("OFFLOAD_VIRTUAL_ANDROID", None)
        dst = os.path.join(work, "iphone-dst")
        dst_loop = os.path.join(work, "iphone-dst-loop")
        runs = [
            ("offload backup", [offload, "backup", "--device", sim.udid, "--to", dst], env, dst),
            ("idevice AFC read loop", [loop, sim.addr, dst_loop], env, dst_loop),
            ("idevice AFC read loop --syncfs", [loop, sim.addr, dst_loop, "--syncfs"], env,
             dst_loop),
        ]
        if ram:
            ram_dst, ram_loop = os.path.join(ram, "offload"), os.path.join(ram, "loop")
            runs += [
                (ram_runs[0], [offload, "backup", "--device", sim.udid, "--to", ram_dst], env,
                 ram_dst),
                (ram_runs[1], [loop, sim.addr, ram_loop], env, ram_loop),
            ]
        try:
            rows = side_by_side(args.rounds, runs, "iPhone copy")
        finally:
            if ram:
                shutil.rmtree(ram, ignore_errors=True)
    med = {k: statistics.median(v[0]) for k, v in rows.items()}
    mbs = {k: total / 1e6 / s for k, s in med.items()}
    ratio = mbs["offload backup"] / mbs["idevice AFC read loop"]
    ratio_sync = mbs["offload backup"] / mbs["idevice AFC read loop --syncfs"]
    what = (f"One virtual iPhone (`offload sim iphone`, same machine) serving {files} files, "
            f"{total / 1e9:.2f} GB: photos of {', '.join(f'{p[1] / 1e6:g}' for p in parts)} MB "
            f"and videos of {', '.join(f'{p[3] / 1e6:g}' for p in parts if p[2])} MB. "
            "`offload backup` (hash, temp file, sync, catalog) against the cargo example "
            "`afc_read_loop` (the idevice crate: 4 MiB AFC reads written to files, no hash). "
            "The simulator reads its roll from this disk (page cache dropped before each "
            f"run); all runs alternate, medians of {args.rounds} rounds. The ratio is "
            "offload's time divided by the tool's: below 1 means offload is faster.")
    copy_section = table(
        "iPhone: copy the camera roll onto the disk",
        {k: rows[k] for k in disk_runs}, "offload backup",
        what + " Plain, the loop leaves its copies in the page cache, to be written after "
        "it exits; `--syncfs` makes them durable once, after the last file (the cheapest "
        "durable copy). offload's copies are durable before they are recorded.") + (
        "\nThroughput (medians): "
        + ", ".join(f"{k} {mbs[k]:.0f} MB/s" for k in disk_runs)
        + f". offload / plain loop = **{ratio:.2f}**; offload / loop with syncfs = "
        f"{ratio_sync:.2f}.\n")
    if ram:
        ratio_ram = mbs[ram_runs[0]] / mbs[ram_runs[1]]
        copy_section += "\n" + table(
            "iPhone: copy the camera roll into RAM (the transport's ceiling)",
            {k: rows[k] for k in ram_runs}, ram_runs[0],
            "The same runs with the destination in RAM (tmpfs), so that the loop measures "
            "what the transport delivers rather than how fast this disk takes writes, and "
            "offload's own work (hash, temp file, catalog) is what separates the two. "
            "Target: offload ≥ 0.9× the loop's throughput.") + (
            f"\nThroughput (medians): offload {mbs[ram_runs[0]]:.0f} MB/s, loop "
            f"{mbs[ram_runs[1]]:.0f} MB/s; offload / loop = **{ratio_ram:.2f}** "
            "(target ≥ 0.9).\n")
        ram_row = (f"{ratio_ram:.2f}× ({mbs[ram_runs[0]]:.0f} vs {mbs[ram_runs[1]]:.0f} MB/s, "
                   f"{total / 1e9:.2f} GB)", verdict(ratio_ram >= 0.9))
    else:
        copy_section += f"\nCopy into RAM not measured: {no_ram}.\n"
        ram_row = (f"not measured: {no_ram}", "**not measured**")

    # Listing: many small files.
    many = os.path.join(work, "iphone-roll-list")
    gen_roll(offload, many, [(args.noop_files, 4096, 0, 0)])
    list_files, _ = roll_bytes(many)
    with Sim(offload, many) as sim:
        env = dict(os.environ, TZ="UTC", HOME=home, USBMUXD_SOCKET_ADDRESS=sim.addr)
        env.pop("OFFLOAD_VIRTUAL_ANDROID", None)
        never = os.path.join(work, "iphone-dry-run-dest")
        shutil.rmtree(never, ignore_errors=True)
        rows = side_by_side(args.rounds, [
            ("offload backup --dry-run",
             [offload, "backup", "--dry-run", "--device", sim.udid, "--to", never], env, None),
            ("idevice AFC listing", [loop, sim.addr, never, "--list-only"], env, None),
        ], "iPhone listing")
        if os.path.exists(never):
            sys.exit(f"a dry run or a listing wrote {never}")
    list_section = table(
        f"iPhone: list {list_files:,} files",
        rows, "offload backup --dry-run",
        f"The same virtual iPhone serving {list_files:,} files of 4 KB under /DCIM. "
        "`offload backup --dry-run` (connect, list /DCIM over AFC with one GetFileInfo per "
        "entry, plan against an empty catalog) against `afc_read_loop --list-only` (connect, "
        f"the same listing); medians of {args.rounds} rounds, each a whole process. "
        "The ratio is offload's time divided by the tool's: below 1 means offload is faster.")
    list_med = {k: statistics.median(v[0]) for k, v in rows.items()}
    summary = [
        ("iPhone: ≥ 0.9× the throughput of the bare idevice AFC loop, copying into RAM "
         "(the transport's ceiling)", *ram_row),
        ("iPhone: the same, copying onto the disk",
         f"{ratio:.2f}× the plain loop ({mbs['offload backup']:.0f} vs "
         f"{mbs['idevice AFC read loop']:.0f} MB/s), which leaves its copies in the page "
         f"cache; {ratio_sync:.2f}× the loop + syncfs, durable as offload's",
         verdict(ratio >= 0.9)),
        (f"iPhone: list {list_files:,} files",
         f"{list_med['offload backup --dry-run']:.2f} s "
         f"(the loop: {list_med['idevice AFC listing']:.2f} s)", ""),
    ]
    return copy_section + "\n" + list_section, summary
