"""Android benchmark, called by scripts/bench.py (`--only android`).

Side by side on one virtual Android phone (mtp-rs's virtual device serving a bulk roll,
`OFFLOAD_VIRTUAL_ANDROID`): `offload backup` against a bare loop that reads the same
files with mtp-rs's `download_windowed` into files (examples/mtp_read_loop.rs), plain
and with one syncfs at the end. Each copies onto the disk and, where /dev/shm is a tmpfs
with room, into RAM: there the loop measures the transport's ceiling, which the target is
about, while onto this disk it measures how fast the page cache takes writes. Also the
listing time: `offload backup --dry-run` against the loop's `--list-only`, both as whole
processes.

The roll is bench.py's `--photos/--photo-size/--videos/--video-size` (1,000 photos of
2 MB and 10 videos of 100 MB by default, 3 GB); pass smaller sizes on a small disk.
The phone and one copy of it must fit on the disk at once.
"""
import json
import os
import shutil
import statistics
import subprocess

from bench import ROOT, drop_caches, ram_dir, timed, verdict

EXAMPLE = "mtp_read_loop"

REAL_HARDWARE = (
    "On real hardware the USB link, not offload, sets the pace: mtp-rs publishes ~41 MB/s "
    "for a 100 MB read from a Pixel 9 Pro XL (2.45 s; libmtp 9.9 s), and phones on a USB 2 "
    "link (a USB 2 port, hub or cable; `offload devices` warns) often give 4–30 MB/s. "
    "Listing with GetObjectPropList, as offload does, takes mtp-rs 0.40 s for a Camera folder "
    "of 3,248 files on a Galaxy S23 Ultra (5.5 s with one request per file). "
    "The virtual phone here has no USB in between: these "
    "figures measure offload's own overhead (hashing, temp file, fsync, catalog) against "
    "the transport's ceiling, not a phone."
)


def _roll(args, work, offload):
    """The phone's directory (its name is the serial), regenerated when the sizes change."""
    phone = os.path.join(work, "android-phone")
    params = {"photos": args.photos, "photo_size": args.photo_size,
              "videos": args.videos, "video_size": args.video_size}
    marker = os.path.join(work, "android-phone.json")
    try:
        with open(marker) as f:
            if json.load(f) == params and os.path.isdir(phone):
                return phone
    except (OSError, ValueError):
        pass
    shutil.rmtree(phone, ignore_errors=True)
    subprocess.run([offload, "sim", "roll", "--kind", "bulk", "--dir", phone,
                    "--photos", str(args.photos), "--photo-size", str(args.photo_size),
                    "--videos", str(args.videos), "--video-size", str(args.video_size)],
                   check=True, stdout=subprocess.DEVNULL)
    with open(marker, "w") as f:
        json.dump(params, f)
    return phone


def _phone_bytes(phone):
    total = files = 0
    for top in ["DCIM", "Pictures", "Movies"]:
        for d, dirs, names in os.walk(os.path.join(phone, top)):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            for n in names:
                if not n.startswith("."):
                    total += os.path.getsize(os.path.join(d, n))
                    files += 1
    return files, total


def _env(work, phone):
    env = dict(os.environ, TZ="UTC", OFFLOAD_VIRTUAL_ANDROID=phone,
               HOME=os.path.join(work, "android-home"),
               # No usbmuxd: iPhone discovery fails at once and cannot join the run.
               USBMUXD_SOCKET_ADDRESS=os.path.join(work, "no-usbmuxd"))
    # No fault or counting layer: offload runs its production code path.
    for k in ["OFFLOAD_VIRTUAL_FAULT", "OFFLOAD_VIRTUAL_STATS", "OFFLOAD_MTP_TIMEOUT_SECS",
              "XDG_CONFIG_HOME"]:
        env.pop(k, None)
    return env


def run(args, work, offload):
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", EXAMPLE],
                   cwd=ROOT, check=True)
    loop = os.path.join(os.path.dirname(offload), "examples", EXAMPLE)
    phone = _roll(args, work, offload)
    files, total = _phone_bytes(phone)
    env = _env(work, phone)
    os.makedirs(env["HOME"], exist_ok=True)
    dst = os.path.join(work, "android-dst")
    ram, no_ram = ram_dir(work, total)

    # name → (command, its destination)
    tools = {
        "offload backup": ([offload, "backup", "--to", dst], dst),
        "mtp-rs loop": ([loop, phone, dst], dst),
        "mtp-rs loop + syncfs": ([loop, phone, dst, "--syncfs"], dst),
    }
    disk_runs = list(tools)
    ram_runs = ["offload backup → RAM", "mtp-rs loop → RAM"]
    if ram:
        ram_dst = os.path.join(ram, "dst")
        tools[ram_runs[0]] = ([offload, "backup", "--to", ram_dst], ram_dst)
        tools[ram_runs[1]] = ([loop, phone, ram_dst], ram_dst)
    rows = {name: ([], []) for name in tools}
    names = list(tools)
    try:
        for r in range(args.rounds):
            # Alternate the order, so that no tool always runs on a warmer machine.
            for name in names if r % 2 == 0 else names[::-1]:
                cmd, out = tools[name]
                shutil.rmtree(out, ignore_errors=True)
                drop_caches()
                secs, rss = timed(cmd, env)
                rows[name][0].append(secs)
                rows[name][1].append(rss)
                print(f"android copy, round {r + 1}: {name}: {secs:.2f} s "
                      f"({total / 1e6 / secs:.0f} MB/s), {rss:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(dst, ignore_errors=True)
        if ram:
            shutil.rmtree(ram, ignore_errors=True)

    listing = {"offload backup --dry-run": ([], []), "mtp-rs loop --list-only": ([], [])}
    empty = os.path.join(work, "android-empty-store")
    for r in range(args.rounds):
        for name in listing:
            shutil.rmtree(empty, ignore_errors=True)
            cmd = ([offload, "backup", "--dry-run", "--to", empty] if name.startswith("offload")
                   else [loop, phone, empty, "--list-only"])
            drop_caches()
            secs, rss = timed(cmd, env)
            listing[name][0].append(secs)
            listing[name][1].append(rss)
            print(f"android listing, round {r + 1}: {name}: {secs:.2f} s", flush=True)

    mbps = {name: total / 1e6 / statistics.median(secs) for name, (secs, _) in rows.items()}
    ours = mbps["offload backup"]
    def copy_table(names):
        base = mbps[names[0]]
        out = ["| run | median s | min s | max s | runs | MB/s | offload ÷ this | peak RSS MiB |",
               "|---|---|---|---|---|---|---|---|"]
        for name in names:
            secs, rss = rows[name]
            out.append(f"| {name} | {statistics.median(secs):.2f} | {min(secs):.2f} | "
                       f"{max(secs):.2f} | {len(secs)} | {mbps[name]:.0f} | "
                       f"{base / mbps[name]:.2f} | {max(rss):.0f} |")
        return out

    lines = [
        "### Android: a virtual phone over MTP",
        "",
        f"{files} files ({args.photos} photos of {args.photo_size / 1e6:g} MB, {args.videos} "
        f"videos of {args.video_size / 1e6:g} MB; {total / 1e9:.2f} GB) served by mtp-rs's "
        "virtual device from this disk; each run copies them all into an empty folder, page "
        f"cache dropped before each run, all runs alternating, medians of {args.rounds} "
        "rounds, whole processes (open, list, copy). The mtp-rs loop is `download_windowed` "
        "in 8 MiB windows straight into files (examples/mtp_read_loop.rs). offload also "
        "hashes, writes through a temp file, syncs and records a catalog.",
        "",
        "Onto the same disk. Plain, the loop leaves its copies in the page cache, to be "
        "written after it exits; `+ syncfs` makes them durable once, after the last file (the "
        "cheapest durable copy).",
        "",
    ] + copy_table(disk_runs)
    if ram:
        lines += [
            "",
            "Into RAM (tmpfs), so that the loop measures what the transport delivers (its "
            "ceiling) rather than how fast this disk takes writes. Target: offload ≥ 0.9× the "
            "loop's throughput.",
            "",
        ] + copy_table(ram_runs)
    else:
        lines += ["", f"Copy into RAM not measured: {no_ram}."]
    lines += [
        "",
        f"Listing the same {files} files (whole processes, medians of {args.rounds}):",
        "",
        "| run | median s | min s | max s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, (secs, rss) in listing.items():
        lines.append(f"| {name} | {statistics.median(secs):.2f} | {min(secs):.2f} | "
                     f"{max(secs):.2f} | {max(rss):.0f} |")
    lines += ["", REAL_HARDWARE, ""]
    loop = mbps["mtp-rs loop"]
    if ram:
        r = mbps[ram_runs[0]] / mbps[ram_runs[1]]
        ram_row = (f"{r:.2f}× ({mbps[ram_runs[0]]:.0f} vs {mbps[ram_runs[1]]:.0f} MB/s, "
                   f"{total / 1e9:.2f} GB)", verdict(r >= 0.9))
    else:
        ram_row = (f"not measured: {no_ram}", "**not measured**")
    list_ours = statistics.median(listing["offload backup --dry-run"][0])
    list_loop = statistics.median(listing["mtp-rs loop --list-only"][0])
    summary = [
        ("Android: ≥ 0.9× the throughput of the bare `download_windowed` loop, copying into "
         "RAM (the transport's ceiling)", *ram_row),
        ("Android: the same, copying onto the disk",
         f"{ours / loop:.2f}× the plain loop ({ours:.0f} vs {loop:.0f} MB/s), which leaves its "
         f"copies in the page cache; {ours / mbps['mtp-rs loop + syncfs']:.2f}× the loop + "
         "syncfs, durable as offload's", verdict(ours >= 0.9 * loop)),
        (f"Android: list {files:,} files", f"{list_ours:.2f} s (the loop: {list_loop:.2f} s)", ""),
    ]
    return "\n".join(lines), summary
