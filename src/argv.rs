//! Backup options as given on the command line, turned back into arguments for a run
//! that starts later or elsewhere: a systemd unit, a crontab line, the runs that
//! `offload watch` starts.
//!
//! The options are read from clap's matches against the definition of
//! [`BackupArgs`](crate::cli::BackupArgs), so that an option added there is passed on
//! without a change here.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, ValueHint};

use crate::cli::{BackupArgs, Cli};

/// The matches of the subcommand at `path` (`["schedule", "add"]`) in this process's
/// own command line. `None` when the command line does not reach it (a caller that was
/// not started from that subcommand, such as a unit test).
pub fn own_matches(path: &[&str]) -> Option<ArgMatches> {
    matches_of(std::env::args_os(), path)
}

/// [`own_matches`] for a given command line (`argv[0]` included).
pub fn matches_of(
    argv: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    path: &[&str],
) -> Option<ArgMatches> {
    let mut m = Cli::command().try_get_matches_from(argv).ok()?;
    for name in path {
        m = m.subcommand_matches(name)?.clone();
    }
    Some(m)
}

/// The backup options given on the command line in `m`, as arguments, leaving out the
/// options whose ids (field names: `device`, `json`...) are in `skip`. Relative paths
/// become absolute (a unit runs in another directory).
pub fn backup_options(m: &ArgMatches, skip: &[&str]) -> Vec<OsString> {
    let def = BackupArgs::augment_args(clap::Command::new("backup"));
    let mut out = Vec::new();
    for arg in def.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if skip.contains(&id) || m.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = OsString::from(format!("--{long}"));
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => out.push(flag),
            ArgAction::Count => {
                for _ in 0..m.get_count(id) {
                    out.push(flag.clone());
                }
            }
            _ => {
                let is_path = matches!(
                    arg.get_value_hint(),
                    ValueHint::AnyPath | ValueHint::DirPath | ValueHint::FilePath
                );
                let Ok(Some(occurrences)) = m.try_get_raw_occurrences(id) else {
                    continue;
                };
                for values in occurrences {
                    for v in values {
                        let v = if is_path {
                            absolute(v)
                        } else {
                            v.to_os_string()
                        };
                        push_option(&mut out, long, v);
                    }
                }
            }
        }
    }
    out
}

/// `--long VALUE`, or `--long=VALUE` when the value could be taken for an option.
fn push_option(out: &mut Vec<OsString>, long: &str, value: OsString) {
    if value.as_encoded_bytes().starts_with(b"-") {
        let mut joined = OsString::from(format!("--{long}="));
        joined.push(&value);
        out.push(joined);
    } else {
        out.push(OsString::from(format!("--{long}")));
        out.push(value);
    }
}

fn absolute(v: &OsStr) -> OsString {
    let p = Path::new(v);
    if p.is_absolute() {
        return v.to_os_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p).into_os_string(),
        Err(_) => v.to_os_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str], skip: &[&str]) -> Vec<String> {
        let mut argv = vec!["offload", "watch"];
        argv.extend_from_slice(args);
        let m = matches_of(argv, &["watch"]).expect("parses");
        backup_options(&m, skip)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn options_given_are_passed_on_and_defaults_are_not() {
        assert!(opts(&[], &[]).is_empty());
        assert_eq!(
            opts(
                &[
                    "--to",
                    "/media/x y",
                    "--include-app-media",
                    "--template=-{name}",
                    "--device",
                    "pixel",
                    "--json",
                ],
                &["device", "json"]
            ),
            vec![
                "--include-app-media",
                "--to",
                "/media/x y",
                "--template=-{name}"
            ]
        );
    }

    #[test]
    fn relative_paths_become_absolute() {
        let got = opts(&["--to", "rel/dest"], &[]);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(got[1], cwd.join("rel/dest").to_str().unwrap());
    }

    #[test]
    fn passed_options_parse_back_to_the_same_backup() {
        let given = ["--to", "/d", "--dry-run", "--template", "{year}/{name}"];
        let mut argv: Vec<String> = vec!["offload".into(), "backup".into()];
        argv.extend(opts(&given, &[]));
        let mut again = vec!["offload", "backup"];
        again.extend_from_slice(&given);
        let parse = |argv: Vec<String>| {
            use clap::Parser;
            format!("{:?}", Cli::try_parse_from(argv).unwrap().command)
        };
        assert_eq!(
            parse(argv),
            parse(again.into_iter().map(String::from).collect())
        );
    }
}
