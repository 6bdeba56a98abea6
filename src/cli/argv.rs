//! Backup options turned back into arguments, for a run that starts later or elsewhere:
//! a systemd unit, a crontab line, the runs that `offload watch` starts.
//!
//! The conversion destructures every options struct without `..`, so that an option
//! added to [`BackupArgs`], [`DestArgs`] or [`FilterArgs`] does not compile until it is
//! passed on here; the round-trip test below checks that what is written parses back to
//! the same options.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::args::{BackupArgs, DestArgs, FilterArgs};

/// The arguments that give `args` to `offload backup` (the subcommand name is not
/// included). Options left at their default are left out. Relative paths become
/// absolute against the current directory (a unit or a child runs elsewhere).
pub fn backup_args(args: &BackupArgs) -> Vec<OsString> {
    let BackupArgs {
        from,
        phones,
        device,
        include_app_media,
        dest,
        template,
        filter,
        dry_run,
        json,
        require_store,
        notify,
    } = args;
    let mut out = Args(Vec::new());
    out.paths("from", from);
    out.flag("phones", *phones);
    out.value("device", device);
    out.flag("include-app-media", *include_app_media);
    dest_args(dest, &mut out);
    out.value("template", template);
    filter_args(filter, &mut out);
    out.flag("dry-run", *dry_run);
    out.flag("json", *json);
    out.flag("require-store", *require_store);
    out.flag("notify", *notify);
    out.0
}

fn dest_args(dest: &DestArgs, out: &mut Args) {
    let DestArgs { to, to_drive } = dest;
    out.paths("to", to);
    out.values("to-drive", to_drive);
}

fn filter_args(filter: &FilterArgs, out: &mut Args) {
    let FilterArgs {
        only,
        exclude,
        since,
        until,
        album,
        favorites,
    } = filter;
    out.values("only", only);
    out.values("exclude", exclude);
    out.value("since", since);
    out.value("until", until);
    out.values("album", album);
    out.flag("favorites", *favorites);
}

/// Arguments being written.
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, long: &str, on: bool) {
        if on {
            self.0.push(format!("--{long}").into());
        }
    }

    fn value(&mut self, long: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.option(long, v.into());
        }
    }

    /// One `--long VALUE` per value: a repeated option collects them again.
    fn values(&mut self, long: &str, values: &[String]) {
        for v in values {
            self.option(long, v.into());
        }
    }

    fn paths(&mut self, long: &str, paths: &[PathBuf]) {
        for p in paths {
            self.option(long, absolute(p).into_os_string());
        }
    }

    /// `--long VALUE`, or `--long=VALUE` when the value could be taken for an option.
    fn option(&mut self, long: &str, value: OsString) {
        if value.as_encoded_bytes().starts_with(b"-") {
            let mut joined = OsString::from(format!("--{long}="));
            joined.push(&value);
            self.0.push(joined);
        } else {
            self.0.push(format!("--{long}").into());
            self.0.push(value);
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p),
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse_backup(args: Vec<OsString>) -> BackupArgs {
        let mut argv: Vec<OsString> = vec!["offload".into(), "backup".into()];
        argv.extend(args);
        match Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{argv:?} does not parse: {e}"))
            .command
        {
            Some(Command::Backup(b)) => b,
            other => panic!("not a backup: {other:?}"),
        }
    }

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    fn every_option() -> BackupArgs {
        BackupArgs {
            from: vec!["/media/card".into(), "/media/x y".into()],
            phones: true,
            device: Some("-pixel".into()),
            include_app_media: true,
            dest: DestArgs {
                to: vec!["/media/me/PHOTOS/offload".into(), "/srv/100% \"b\"".into()],
                to_drive: vec!["PHOTOS".into(), "1234-ABCD".into()],
            },
            template: Some("-{year}/{name}".into()),
            filter: FilterArgs {
                only: vec!["photo".into(), "album:Trip 2024".into()],
                exclude: vec!["screenshot".into()],
                since: Some("2024-06".into()),
                until: Some("2024-06-30T18:00".into()),
                album: vec!["Holidays".into(), "".into()],
                favorites: true,
            },
            dry_run: true,
            json: true,
            require_store: true,
            notify: true,
        }
    }

    #[test]
    fn options_parse_back_to_the_same_backup() {
        let mut only_some = BackupArgs::default();
        only_some.dest.to = vec!["/d".into()];
        only_some.filter.only = vec!["video".into()];
        only_some.dry_run = true;
        let mut flags = every_option();
        flags.from.clear();
        flags.dest = DestArgs::default();
        for given in [BackupArgs::default(), every_option(), only_some, flags] {
            assert_eq!(parse_backup(backup_args(&given)), given);
        }
    }

    #[test]
    fn defaults_are_left_out_and_the_rest_keeps_the_definition_order() {
        assert!(backup_args(&BackupArgs::default()).is_empty());
        let mut b = BackupArgs {
            include_app_media: true,
            template: Some("-{name}".into()),
            json: true,
            ..Default::default()
        };
        b.dest.to = vec!["/media/x y".into()];
        assert_eq!(
            strings(&backup_args(&b)),
            [
                "--include-app-media",
                "--to",
                "/media/x y",
                "--template=-{name}",
                "--json"
            ]
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let mut b = BackupArgs {
            from: vec!["card".into()],
            ..Default::default()
        };
        b.dest.to = vec!["rel/dest".into()];
        let cwd = std::env::current_dir().unwrap();
        let back = parse_backup(backup_args(&b));
        assert_eq!(back.from, [cwd.join("card")]);
        assert_eq!(back.dest.to, [cwd.join("rel/dest")]);
    }
}
