//! Finding every connected phone, Android and iPhone alike, and saying why each one
//! that cannot be read cannot be.

use std::time::Duration;

use serde::Serialize;

use super::android::{self, AndroidOptions};
use super::iphone::{self, IphoneState};
use super::{DeviceInfo, Source, SourceError};

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct DetectOptions {
    /// List messaging apps' media on Android phones too.
    pub include_app_media: bool,
    /// How long to wait for "Trust This Computer?" on an iPhone; `None` keeps the
    /// default (a minute), zero asks once (for `offload devices`).
    pub trust_timeout: Option<Duration>,
    /// usbmuxd address; `None`: `USBMUXD_SOCKET_ADDRESS`, else the platform default.
    pub usbmuxd: Option<String>,
    /// Only phones whose serial, UDID or name matches (case-insensitive).
    pub device: Option<String>,
}

/// A phone that is there but cannot be read, and what the user must do.
#[derive(Clone, Debug, Serialize)]
pub struct Blocked {
    pub id: String,
    pub kind: String,
    pub name: String,
    /// `locked`, `needs-trust`, `trust-denied`, `blocked` (see the message), `gone`.
    pub state: String,
    pub message: String,
}

/// Everything found.
#[derive(Default)]
pub struct Found {
    pub sources: Vec<Box<dyn Source>>,
    pub blocked: Vec<Blocked>,
    /// Facts about the search (no USB bus here, usbmuxd not running...), not errors.
    pub notes: Vec<String>,
    /// Set when usbmuxd could not be reached: iPhones cannot be seen at all.
    pub no_usbmuxd: Option<String>,
}

fn matches(info: &DeviceInfo, want: &str) -> bool {
    let want = want.to_lowercase();
    let id_tail = info.id.split_once(':').map(|(_, t)| t).unwrap_or(&info.id);
    [
        Some(info.name.as_str()),
        info.serial.as_deref(),
        Some(id_tail),
        Some(info.id.as_str()),
    ]
    .into_iter()
    .flatten()
    .any(|v| v.to_lowercase() == want)
}

/// Finds every phone. Never fails: what cannot be read is in `blocked`, what could not
/// be searched is in `notes`/`no_usbmuxd`. Blocking; not for use inside a runtime.
pub fn detect(opts: &DetectOptions) -> Found {
    let mut found = Found::default();
    let scope = Scope::of(opts.device.as_deref());
    if scope.search_android {
        find_android(opts, scope.android_only, &mut found);
    }
    if scope.search_iphone {
        find_iphones(opts, scope.iphone_only, &mut found);
    }
    if let Some(want) = &opts.device {
        keep_wanted(&mut found, want);
    }
    found
}

/// Which phones a `--device` value lets the search open.
struct Scope<'a> {
    search_android: bool,
    /// Open only the Android phone with this serial.
    android_only: Option<&'a str>,
    search_iphone: bool,
    /// Open only the iPhone with this UDID.
    iphone_only: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// The scope for `device`. A device id (`android:SERIAL`, `iphone:UDID`) names one
    /// phone: open only that one, so that another phone, busy or asking for trust, is
    /// left alone. A name needs every phone opened to be known. An `android:usb-...` id
    /// (a phone without a serial, known by its USB port) opens every Android phone but
    /// no iPhone.
    fn of(device: Option<&'a str>) -> Scope<'a> {
        let wanted = device.and_then(|d| d.split_once(':'));
        let (android_only, iphone_only) = match wanted {
            Some((kind, rest))
                if kind.eq_ignore_ascii_case("android") && !rest.starts_with("usb-") =>
            {
                (Some(rest), None)
            }
            Some((kind, rest)) if kind.eq_ignore_ascii_case("iphone") => (None, Some(rest)),
            _ => (None, None),
        };
        Scope {
            search_android: iphone_only.is_none(),
            android_only,
            search_iphone: android_only.is_none()
                && !wanted.is_some_and(|(k, _)| k.eq_ignore_ascii_case("android")),
            iphone_only,
        }
    }
}

/// Opens the Android phones (only the one with serial `only`, when given) and adds
/// them to `found`: readable ones to `sources`, the others to `blocked`, and what the
/// search noticed to `notes`.
fn find_android(opts: &DetectOptions, only: Option<&str>, found: &mut Found) {
    let mut aopts = AndroidOptions::from_env();
    aopts.include_app_media = opts.include_app_media;
    let a = android::discover_only(&aopts, only);
    found.notes.extend(a.notes);
    for s in a.sources {
        found.sources.push(Box::new(s));
    }
    for b in a.blocked {
        let state = match &b.error {
            SourceError::Gone(_) => "gone",
            // The message names the phone first ("Pixel 8 shows no storage. Unlock..."),
            // so look for the fix anywhere in it.
            _ if b.error.to_string().contains(android::UNLOCK_MESSAGE) => "locked",
            _ => "blocked",
        };
        found.blocked.push(Blocked {
            id: b.info.id.clone(),
            kind: "android".into(),
            name: b.info.name.clone(),
            state: state.into(),
            message: b.error.to_string(),
        });
    }
}

/// Opens the iPhones through usbmuxd (only the one with UDID `only`, when given) and
/// adds them to `found`: readable ones to `sources`, the others to `blocked`. When
/// usbmuxd cannot be reached, says why in `no_usbmuxd`.
fn find_iphones(opts: &DetectOptions, only: Option<&str>, found: &mut Found) {
    let mut iopts = iphone::Options {
        usbmuxd: opts.usbmuxd.clone(),
        ..iphone::Options::default()
    };
    if let Some(t) = opts.trust_timeout {
        iopts.trust_timeout = t;
    }
    match iphone::discover_only(&iopts, only) {
        Ok(phones) => {
            for p in phones {
                match p {
                    Ok(s) => found.sources.push(Box::new(s)),
                    Err(u) => found.blocked.push(Blocked {
                        id: format!("iphone:{}", u.udid),
                        kind: "iphone".into(),
                        name: "iPhone".into(),
                        state: match u.state {
                            IphoneState::Locked => "locked",
                            IphoneState::NeedsTrust => "needs-trust",
                            IphoneState::TrustDenied => "trust-denied",
                            IphoneState::Failed => "blocked",
                        }
                        .into(),
                        message: u.message,
                    }),
                }
            }
        }
        Err(e) => found.no_usbmuxd = Some(e.message),
    }
}

/// Keeps in `found` only the phones `want` names (by serial, UDID, name or id,
/// case-insensitive): a name is only known once every phone was opened.
fn keep_wanted(found: &mut Found, want: &str) {
    found.sources.retain(|s| matches(s.info(), want));
    found.blocked.retain(|b| {
        let tail = b.id.split_once(':').map(|(_, t)| t).unwrap_or(&b.id);
        [b.id.as_str(), tail, b.name.as_str()]
            .iter()
            .any(|v| v.eq_ignore_ascii_case(want))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceKind;

    #[test]
    fn device_filter_matches_serial_name_and_id() {
        let info = DeviceInfo {
            id: "android:ABC123".into(),
            kind: SourceKind::Android,
            name: "Pixel 8".into(),
            manufacturer: None,
            model: None,
            serial: Some("ABC123".into()),
            storages: vec![],
            warnings: vec![],
        };
        for want in ["abc123", "pixel 8", "android:ABC123"] {
            assert!(matches(&info, want), "{want}");
        }
        assert!(!matches(&info, "Pixel"));
    }
}
