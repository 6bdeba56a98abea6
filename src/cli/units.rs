//! What a schedule is, and how it is written down: systemd user units, or a crontab line
//! where there is no systemd. Pure text: nothing here touches the system.
//!
//! Every value that comes from the user (paths, templates, names of phones) is quoted by
//! the rules of the place it goes to: systemd's command-line syntax (quotes, C escapes,
//! `%%` for specifiers, `$$` for variables) or the shell's under cron (`'...'`, and `\%`
//! for cron's own use of `%`).

use std::ffi::OsString;
use std::fmt::Write as _;

/// When a schedule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Every day at this local time.
    Daily { hour: u8, minute: u8 },
    /// At this interval, in seconds.
    Every(u64),
    /// Whenever a phone is plugged in (`offload watch` runs all the time).
    OnPlug,
}

impl When {
    /// How `schedule add` was told, e.g. `--daily 02:00`.
    pub fn describe(&self) -> String {
        match self {
            When::Daily { hour, minute } => format!("--daily {hour:02}:{minute:02}"),
            When::Every(s) => format!("--every {}", systemd_span(*s)),
            When::OnPlug => "--on-plug".to_string(),
        }
    }

    /// Parses what [`When::describe`] wrote.
    pub fn parse_described(text: &str) -> Option<When> {
        let text = text.trim();
        if text == "--on-plug" {
            return Some(When::OnPlug);
        }
        if let Some(t) = text.strip_prefix("--daily ") {
            let (hour, minute) = parse_daily(t).ok()?;
            return Some(When::Daily { hour, minute });
        }
        text.strip_prefix("--every ")
            .and_then(|t| parse_every(t).ok())
            .map(When::Every)
    }
}

/// A schedule: its name, when it runs, and the command it runs (absolute program path
/// first).
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub when: When,
    pub command: Vec<OsString>,
}

/// Names become unit names and file names: letters, digits, `-` and `_` only.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a schedule name has 1 to 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "the schedule name {name:?} holds {c:?}: use letters, digits, '-' and '_' only"
        ));
    }
    Ok(())
}

/// `HH:MM` (or `H:MM`), 24-hour.
pub fn parse_daily(text: &str) -> Result<(u8, u8), String> {
    let bad = || format!("--daily wants a 24-hour time such as 02:00 or 18:30, not {text:?}");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: u8 = h.parse().map_err(|_| bad())?;
    let minute: u8 = m.parse().map_err(|_| bad())?;
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok((hour, minute))
}

/// A duration such as `30min`, `6h`, `1d`, `1h30min`, `90s`, `2w`; at least a minute.
pub fn parse_every(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "--every wants a duration such as 30min, 6h, 1d or 1h30min (at least 1min), not {text:?}"
        )
    };
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let secs = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total < 60 {
        return Err(bad());
    }
    Ok(total)
}

/// Seconds as a systemd time span, largest units first: `1h 30min`.
pub fn systemd_span(mut secs: u64) -> String {
    let mut parts = Vec::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("min", 60),
        ("s", 1),
    ] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// Quotes one argument for a systemd command line (`ExecStart=`): plain words stay as
/// they are; anything else goes in double quotes with C escapes. `%` is doubled
/// (specifiers) and `$` too (variables), quoted or not. Systemd units are UTF-8, so an
/// argument that is not is refused.
pub fn systemd_quote(arg: &std::ffi::OsStr) -> Result<String, String> {
    quote_word(arg, false)
}

/// [`systemd_quote`] for the program, the first word: `@`, `-`, `:`, `+` and `!` at its
/// start would be read as systemd's prefixes, so such a program is quoted.
fn systemd_quote_program(arg: &std::ffi::OsStr) -> Result<String, String> {
    quote_word(arg, true)
}

fn quote_word(arg: &std::ffi::OsStr, program: bool) -> Result<String, String> {
    let s = arg.to_str().ok_or_else(|| {
        format!(
            "{} is not valid UTF-8, which a systemd unit cannot hold",
            arg.to_string_lossy()
        )
    })?;
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@{}".contains(c))
        && !(program && s.starts_with(['@', '-', ':', '+', '!']));
    if plain {
        return Ok(s.to_string());
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\0' => return Err("an argument holds a NUL byte".into()),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Quotes one argument for a crontab line: single quotes for the shell, and `\%`
/// because cron turns a bare `%` into a newline.
pub fn cron_quote(arg: &std::ffi::OsStr) -> Result<String, String> {
    let s = arg.to_str().ok_or_else(|| {
        format!(
            "{} is not valid UTF-8, which a crontab cannot hold",
            arg.to_string_lossy()
        )
    })?;
    if s.contains(['\n', '\r', '\0']) {
        return Err(format!(
            "{s:?} holds a line break, which a crontab line cannot hold"
        ));
    }
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    if plain {
        return Ok(s.to_string());
    }
    Ok(format!(
        "'{}'",
        s.replace('\'', "'\\''").replace('%', "\\%")
    ))
}

/// The first line of every unit offload writes; `schedule list` looks for it.
const MARK: &str = "# offload schedule";

/// The unit files of a schedule: (file name, contents). The service first.
pub fn render(s: &Schedule) -> Result<Vec<(String, String)>, String> {
    let exec = s
        .command
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                systemd_quote_program(a)
            } else {
                systemd_quote(a)
            }
        })
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    let header = format!(
        "{MARK} \"{name}\": {when}\n# Made by `offload schedule add`; remove it with `offload schedule remove {name}`.\n",
        name = s.name,
        when = s.when.describe()
    );
    let service_name = format!("offload-{}.service", s.name);
    let timer_name = format!("offload-{}.timer", s.name);
    let mut units = Vec::new();
    match &s.when {
        When::OnPlug => {
            units.push((
                service_name,
                format!(
                    "{header}\n[Unit]\nDescription=offload: back up each phone when it is plugged in (schedule {name})\n\n\
                     [Service]\nType=simple\nExecStart={exec}\n\
                     # watch stops cleanly on SIGTERM (exit 0); anything else is restarted.\n\
                     Restart=on-failure\nRestartSec=10\n\n\
                     [Install]\nWantedBy=default.target\n",
                    name = s.name
                ),
            ));
        }
        When::Daily { .. } | When::Every(_) => {
            units.push((
                service_name,
                format!(
                    "{header}\n[Unit]\nDescription=offload: back up phones to the backup drive (schedule {name})\n\n\
                     [Service]\nType=oneshot\nExecStart={exec}\n\
                     # 3: no phone was connected (or readable) at that time, which is no failure of the schedule.\n\
                     # 143: stopped by systemd (shutdown, systemctl stop); the files it had read are kept.\n\
                     SuccessExitStatus=3 143\nNice=10\n",
                    name = s.name
                ),
            ));
            let trigger = match &s.when {
                When::Daily { hour, minute } => {
                    format!("OnCalendar=*-*-* {hour:02}:{minute:02}:00\n# A run missed while the computer was off happens at the next start.\nPersistent=true\n")
                }
                When::Every(secs) => format!(
                    "# Counted from the last run; after a reboot the first run comes {} after boot.\n\
                     OnBootSec={}\nOnUnitActiveSec={}\n",
                    systemd_span((*secs).min(300)),
                    systemd_span((*secs).min(300)),
                    systemd_span(*secs)
                ),
                When::OnPlug => unreachable!(),
            };
            units.push((
                timer_name,
                format!(
                    "{header}\n[Unit]\nDescription=offload: {when} backup (schedule {name})\n\n\
                     [Timer]\n{trigger}Unit=offload-{name}.service\n\n\
                     [Install]\nWantedBy=timers.target\n",
                    name = s.name,
                    when = s.when.describe().trim_start_matches("--"),
                ),
            ));
        }
    }
    Ok(units)
}

/// The unit `systemctl enable` is given: the timer, or the service for `--on-plug`.
pub fn main_unit(name: &str, when: &When) -> String {
    match when {
        When::OnPlug => format!("offload-{name}.service"),
        _ => format!("offload-{name}.timer"),
    }
}

/// What a unit file offload wrote says about its schedule: (name, when).
pub fn parse_header(text: &str) -> Option<(String, When)> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix(MARK)?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let (name, when) = rest.split_once("\": ")?;
    check_name(name).ok()?;
    Some((name.to_string(), When::parse_described(when)?))
}

/// The `ExecStart=` value of a unit file's text.
pub fn exec_start(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .map(str::to_string)
}

/// The crontab line for a schedule without systemd, and a note when cron can only come
/// close (an interval that does not divide an hour or a day). `None` for `--on-plug`:
/// cron cannot start a program when a phone is plugged in.
pub fn crontab_line(s: &Schedule) -> Result<Option<(String, Option<String>)>, String> {
    let command = s
        .command
        .iter()
        .map(|a| cron_quote(a))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    let (fields, note) = match s.when {
        When::OnPlug => return Ok(None),
        When::Daily { hour, minute } => (format!("{minute} {hour} * * *"), None),
        When::Every(secs) => cron_every(secs),
    };
    Ok(Some((format!("{fields} {command}"), note)))
}

fn cron_every(secs: u64) -> (String, Option<String>) {
    let minutes = secs.div_ceil(60).max(1);
    let exact = secs.is_multiple_of(60);
    let (fields, exact) = if minutes < 60 {
        (format!("*/{minutes} * * * *"), exact && 60 % minutes == 0)
    } else if minutes < 1440 {
        let hours = minutes.div_ceil(60);
        (
            format!("0 */{hours} * * *"),
            exact && minutes.is_multiple_of(60) && 24 % hours == 0,
        )
    } else {
        let days = minutes.div_ceil(1440);
        let f = if days == 1 {
            "0 0 * * *".to_string()
        } else {
            format!("0 0 */{days} * *")
        };
        (f, exact && minutes.is_multiple_of(1440) && days == 1)
    };
    let note = (!exact).then(|| {
        format!(
            "cron counts from the clock, not from the last run: this line runs roughly every {}",
            systemd_span(secs)
        )
    });
    (fields, note)
}

/// Splits a command line the way systemd does (quotes, C escapes, `%%` and `$$`), for
/// the subset of the syntax that [`systemd_quote`] writes: how `schedule list` shows a
/// unit's command and `schedule remove` finds its crontab line again.
pub fn systemd_split(line: &str) -> Vec<String> {
    let line = line.replace("%%", "%").replace("$$", "$");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ') => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                in_word = true;
                match chars.next().unwrap_or('\\') {
                    'n' => cur.push('\n'),
                    't' => cur.push('\t'),
                    'x' => {
                        let h: String = chars.by_ref().take(2).collect();
                        cur.push(u8::from_str_radix(&h, 16).unwrap_or(b'?') as char);
                    }
                    other => cur.push(other),
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn systemd_quoting_round_trips_hostile_values() {
        let args = [
            "/usr/bin/offload",
            "--to",
            "/media/me/My Photos",
            "/a\"b'c\\d",
            "100%;$HOME ${X}",
            ";",
            "-dash",
            "tab\there\nnewline\u{1}",
            "{device}/{year}",
            "ünïcødé",
        ];
        let line = args
            .iter()
            .map(|a| systemd_quote(OsStr::new(a)).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(systemd_split(&line), args);
        // A `%` or `$` is never left single, so systemd expands nothing.
        assert!(systemd_quote(OsStr::new("%h")).unwrap().contains("%%h"));
        assert!(systemd_quote(OsStr::new("$HOME"))
            .unwrap()
            .contains("$$HOME"));
        assert!(systemd_quote(OsStr::new("a\0b")).is_err());
        assert_eq!(systemd_quote(OsStr::new("--to")).unwrap(), "--to");
        assert_eq!(systemd_quote_program(OsStr::new("-x")).unwrap(), "\"-x\"");
    }

    #[test]
    fn cron_quoting_escapes_percent_and_quotes() {
        assert_eq!(
            cron_quote(OsStr::new("/usr/bin/offload")).unwrap(),
            "/usr/bin/offload"
        );
        assert_eq!(
            cron_quote(OsStr::new("it's 100% $HOME")).unwrap(),
            "'it'\\''s 100\\% $HOME'"
        );
        assert!(cron_quote(OsStr::new("a\nb")).is_err());
    }

    #[test]
    fn names_times_and_durations() {
        assert!(check_name("nightly_2-b").is_ok());
        for bad in ["", "a b", "a/b", "../x", "a.b", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_daily("02:00"), Ok((2, 0)));
        assert_eq!(parse_daily("2:05"), Ok((2, 5)));
        for bad in ["24:00", "12:60", "1200", "12:5", "a:bc", ""] {
            assert!(parse_daily(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_every("6h"), Ok(21_600));
        assert_eq!(parse_every("1h30min"), Ok(5_400));
        assert_eq!(parse_every("1h 30m"), Ok(5_400));
        assert_eq!(parse_every("2w"), Ok(1_209_600));
        for bad in ["30s", "5", "h", "3 parsecs", ""] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        assert_eq!(systemd_span(5_400), "1h 30min");
        for w in [
            When::OnPlug,
            When::Daily { hour: 2, minute: 5 },
            When::Every(5_400),
        ] {
            assert_eq!(When::parse_described(&w.describe()), Some(w));
        }
    }

    #[test]
    fn crontab_lines() {
        let s = |when| Schedule {
            name: "n".into(),
            when,
            command: vec!["/bin/offload".into(), "backup".into()],
        };
        let line = |when| crontab_line(&s(when)).unwrap().unwrap();
        assert_eq!(
            line(When::Daily { hour: 2, minute: 5 }).0,
            "5 2 * * * /bin/offload backup"
        );
        assert_eq!(
            line(When::Every(1800)),
            ("*/30 * * * * /bin/offload backup".into(), None)
        );
        assert_eq!(
            line(When::Every(6 * 3600)).0,
            "0 */6 * * * /bin/offload backup"
        );
        assert!(line(When::Every(7 * 60)).1.is_some());
        assert!(line(When::Every(5 * 3600)).1.is_some());
        assert!(crontab_line(&s(When::OnPlug)).unwrap().is_none());
    }

    #[test]
    fn headers_are_read_back() {
        let sched = Schedule {
            name: "nightly".into(),
            when: When::Daily { hour: 2, minute: 0 },
            command: vec!["/bin/offload".into(), "backup".into()],
        };
        let units = render(&sched).unwrap();
        assert_eq!(units[0].0, "offload-nightly.service");
        assert_eq!(units[1].0, "offload-nightly.timer");
        assert!(units[1].1.contains("OnCalendar=*-*-* 02:00:00\n"));
        assert!(units[1].1.contains("Persistent=true\n"));
        for (_, text) in &units {
            assert_eq!(
                parse_header(text),
                Some(("nightly".into(), sched.when.clone()))
            );
        }
        assert_eq!(exec_start(&units[0].1).unwrap(), "/bin/offload backup");
    }
}
