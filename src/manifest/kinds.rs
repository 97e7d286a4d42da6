//! The action part of a task: `run`, `download` and `service` tables → [`crate::model::Action`] pieces.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::DeValue;

use super::diagnostic::Problem;
use super::interpolate::Insert;
use super::keys;
use super::load::check_url;
use super::task::TaskBuilder;
use super::walk::{Reader, Val, get};
use crate::model::{CommandLine, Download, Readiness, Service};
use crate::template::Template;

impl TaskBuilder<'_, '_> {
    pub(super) fn command(
        &self,
        r: &mut Reader<'_>,
        v: &Val<'_>,
        key: &str,
    ) -> Option<CommandLine> {
        let what = self.what(key);
        match v.get_ref() {
            DeValue::String(s) => {
                if s.trim().is_empty() {
                    r.push(
                        Problem::at(v.span(), format!("`{what}` is empty")).label("nothing to run"),
                    );
                    return None;
                }
                self.template_as(r, s, &v.span(), Insert::Shell)
                    .map(CommandLine::Shell)
            }
            DeValue::Array(_) => {
                let list = r.strings(v, &what, false)?;
                if list.is_empty() {
                    r.push(Problem::at(v.span(), format!("`{what}` is an empty array")).label("nothing to run").help("give the program and its arguments, e.g. [\"python3\", \"script.py\"]"));
                    return None;
                }
                let mut args = Vec::with_capacity(list.len());
                for (text, span) in list {
                    args.push(self.template(r, &text, &span)?);
                }
                Some(CommandLine::Argv(args))
            }
            _ => {
                r.push(Problem::at(v.span(), format!("`{what}` must be a string (run with sh -c) or an array (program and arguments)")).label("wrong type"));
                None
            }
        }
    }

    pub(super) fn download(&self, r: &mut Reader<'_>) -> Option<Download> {
        let v = get(self.table, "download")?;
        let t = r.table(v, &self.what("download"))?;
        r.check_keys(t, keys::DOWNLOAD, &format!("tasks.{}.download", self.name));
        let mut urls = Vec::new();
        match (get(t, "url"), get(t, "urls")) {
            (Some(_), Some(u)) => {
                r.push(
                    Problem::at(u.span(), "a download has `url` or `urls`, not both")
                        .label("second URL field")
                        .help("put every mirror in `urls`"),
                );
            }
            (None, None) => {
                r.push(
                    Problem::at(
                        v.span(),
                        format!("download task `{}` has no `url`", self.name),
                    )
                    .label("missing url")
                    .help("add `url = \"https://...\"`, or `urls = [...]` for mirrors"),
                );
            }
            (Some(u), None) => urls.extend(r.string(u, &self.what("download.url"))),
            (None, Some(u)) => {
                let list = r
                    .strings(u, &self.what("download.urls"), false)
                    .unwrap_or_default();
                if list.is_empty() {
                    r.push(Problem::at(u.span(), "`urls` is empty").label("no mirror"));
                }
                urls.extend(list);
            }
        }
        let mut templates = Vec::new();
        for (text, span) in urls {
            templates.extend(self.url_template(r, &text, span, "download.url"));
        }
        let dest = match get(t, "dest") {
            Some(d) => self.path(r, d, "dest", false),
            None => {
                r.push(
                    Problem::at(
                        v.span(),
                        format!("download task `{}` has no `dest`", self.name),
                    )
                    .label("missing dest")
                    .help("add `dest = \"data/file.csv\"`, relative to the manifest"),
                );
                None
            }
        };
        let sha256 = get(t, "sha256").and_then(|s| {
            let (raw, span) = r.string(s, &self.what("download.sha256"))?;
            // A pin may come from a variable or an item (`sha256 = "${item.sha256}"`).
            let tpl = self.template(r, &raw, &span)?;
            let Some(text) = tpl.as_literal() else {
                r.push(
                    Problem::at(span, "a sha256 pin may not contain a secret")
                        .label("secret in a pin")
                        .help("a pin is public: write its 64 hex digits"),
                );
                return None;
            };
            let ok = text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                r.push(
                    Problem::at(span, format!("malformed sha256 `{text}`"))
                        .label("not a sha256 digest")
                        .help("a sha256 is 64 hex digits (sha256sum FILE prints it)"),
                );
            }
            ok.then(|| text.to_ascii_lowercase())
        });
        let mut headers = BTreeMap::new();
        if let Some(h) =
            get(t, "headers").and_then(|h| r.string_table(h, &self.what("download.headers")))
        {
            for e in h {
                // Known now, not when the request is built: `check` says it.
                if reqwest::header::HeaderName::from_bytes(e.key.as_bytes()).is_err() {
                    r.push(
                        Problem::at(e.key_span.clone(), format!("`{}` is not a valid header name", e.key.escape_debug()))
                            .label("not an HTTP header name")
                            .help("a header name is a token: letters, digits and `-` (e.g. `X-Api-Key`), no spaces"),
                    );
                    continue;
                }
                if e.value.contains(['\r', '\n', '\0']) {
                    r.push(
                        Problem::at(
                            e.span.clone(),
                            format!("the value of header `{}` holds a line break or NUL", e.key),
                        )
                        .label("not an HTTP header value")
                        .help("a header value is one line"),
                    );
                    continue;
                }
                if let Some(tpl) = self.template(r, &e.value, &e.span) {
                    headers.insert(e.key, tpl);
                }
            }
        }
        let max_bytes = get(t, "max_bytes").and_then(|m| match m.get_ref() {
            DeValue::String(s) => match crate::units::parse_size(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    r.push(
                        Problem::at(m.span(), e)
                            .label("not a size")
                            .help("write sizes like \"64MiB\" or a number of bytes"),
                    );
                    None
                }
            },
            _ => r
                .integer_in(m, &self.what("download.max_bytes"), 1, i64::MAX)
                .map(|n| n as u64),
        });
        let resume = get(t, "resume")
            .and_then(|b| r.boolean(b, &self.what("download.resume")))
            .unwrap_or(true);
        let revalidate = get(t, "revalidate")
            .and_then(|b| r.boolean(b, &self.what("download.revalidate")))
            .unwrap_or(false);
        if templates.is_empty() {
            return None;
        }
        Some(Download {
            urls: templates,
            dest: dest?,
            sha256,
            pin_source: crate::model::PinSource::Manifest,
            headers,
            max_bytes,
            resume,
            revalidate,
        })
    }

    pub(super) fn service(&self, r: &mut Reader<'_>) -> Option<Service> {
        let v = get(self.table, "service")?;
        let t = r.table(v, &self.what("service"))?;
        r.check_keys(t, keys::SERVICE, &format!("tasks.{}.service", self.name));
        let run = match get(t, "run") {
            Some(cmd) => self.command(r, cmd, "service.run"),
            None => {
                r.push(
                    Problem::at(v.span(), format!("service `{}` has no `run`", self.name))
                        .label("missing run"),
                );
                None
            }
        };
        let ready = match get(t, "ready") {
            None => {
                r.push(Problem::at(v.span(), format!("service `{}` has no `ready` probe", self.name)).label("missing ready").help("add `ready = { url = \"http://127.0.0.1:8000/\" }` or `ready = { tcp = \"127.0.0.1:8000\" }`"));
                None
            }
            Some(rv) => self.ready(r, rv),
        };
        let ready_timeout = get(t, "ready_timeout")
            .and_then(|d| r.duration(d, &self.what("service.ready_timeout")))
            .unwrap_or(Duration::from_secs(30));
        Some(Service {
            run: run?,
            ready: ready?,
            ready_timeout,
        })
    }

    /// An interpolated http(s) URL whose secrets sit only where they are percent-encoded
    /// (user, password, path, query, fragment; SPEC §13), never in the scheme, host or port.
    fn url_template(
        &self,
        r: &mut Reader<'_>,
        text: &str,
        span: std::ops::Range<usize>,
        key: &str,
    ) -> Option<Template> {
        let tpl = self.template(r, text, &span)?;
        if let Err(e) = tpl.url_secret_parts() {
            r.push(
                Problem::at(span, format!("{e} (in `{}`)", self.what(key)))
                    .label("a secret here could choose where the request goes")
                    .help("put the secret in the user or password (http://user:${secret.PW}@host/), a header, the path or the query"),
            );
            return None;
        }
        let probe = tpl
            .expose_url_with(|_| Some("x".into()))
            .unwrap_or_default();
        check_url(r, &probe, span, &self.what(key))?;
        Some(tpl)
    }

    pub(super) fn ready(&self, r: &mut Reader<'_>, v: &Val<'_>) -> Option<Readiness> {
        let t = r.table(v, &self.what("service.ready"))?;
        r.check_keys(
            t,
            keys::READY,
            &format!("tasks.{}.service.ready", self.name),
        );
        match (get(t, "url"), get(t, "tcp")) {
            (Some(u), None) => {
                let (text, span) = r.string(u, &self.what("service.ready.url"))?;
                let tpl = self.url_template(r, &text, span, "service.ready.url")?;
                Some(Readiness::Url(tpl))
            }
            (None, Some(a)) => {
                let (text, span) = r.string(a, &self.what("service.ready.tcp"))?;
                let tpl = self.template(r, &text, &span)?;
                let addr = tpl.as_literal().unwrap_or("").to_string();
                let ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    r.push(
                        Problem::at(span, format!("`ready.tcp` must be HOST:PORT, not `{addr}`"))
                            .label("not an address"),
                    );
                    return None;
                }
                Some(Readiness::Tcp(addr))
            }
            _ => {
                r.push(
                    Problem::at(v.span(), "`ready` needs exactly one of `url` or `tcp`")
                        .label("ambiguous probe"),
                );
                None
            }
        }
    }
}
