//! `[execution]` (SPEC §11): the Remote Execution API endpoint command tasks may be sent to,
//! and what every remote action carries (instance, platform, metadata, `PATH`).
//!
//! Only the configuration lives here; which task goes where is [`crate::plan::placement`]'s
//! decision, and talking to the cluster is the REAPI client's.

use std::collections::BTreeMap;

use crate::template::Template;

use super::Task;

/// `[execution]` after `TASKRUN_REMOTE_EXECUTOR`: with no `remote`, every task runs here.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecutionConfig {
    /// The executor: `[execution] remote`, or `TASKRUN_REMOTE_EXECUTOR` over it.
    pub remote: Option<GrpcUrl>,
    /// The REAPI `instance_name`.
    pub instance: String,
    /// Properties every remote action asks for; a task's own `platform` wins key by key.
    pub platform: BTreeMap<String, String>,
    /// gRPC metadata sent on every call (lowercase keys); values may hold secrets, which
    /// never enter an Action (they go with the call, not into the cluster's CAS).
    pub headers: BTreeMap<String, Template>,
    /// Remote actions in flight; `None`: [`ExecutionConfig::JOBS_PER_SLOT`] × the run's
    /// concurrency (a remote action holds no local slot, so the local limit says little).
    pub jobs: Option<u32>,
    /// Remote actions that wait on an open stream (Execute or WaitExecution); the others are
    /// polled (GetOperation). Servers that serve each call on a thread from a fixed pool
    /// (BuildGrid) refuse their own bots once the streams take every thread.
    pub streams: u32,
    /// `PATH` of remote commands: the caller's environment is not sent, and a worker's
    /// image decides what is installed where.
    pub path: String,
    /// Run a task here when the cluster stays unreachable, instead of failing it.
    pub fallback_local: bool,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            remote: None,
            instance: String::new(),
            platform: BTreeMap::new(),
            headers: BTreeMap::new(),
            jobs: None,
            streams: Self::DEFAULT_STREAMS,
            path: Self::DEFAULT_PATH.to_string(),
            fallback_local: true,
        }
    }
}

impl ExecutionConfig {
    /// `PATH` of remote commands unless `[execution] path` says otherwise.
    pub const DEFAULT_PATH: &'static str = "/usr/local/bin:/usr/bin:/bin";

    /// Open streams unless `[execution] streams` says otherwise: below the 10 threads of a
    /// BuildGrid server on 2 CPUs (its default pool is 5 per CPU) with a bot calling in.
    pub const DEFAULT_STREAMS: u32 = 8;

    /// Remote actions in flight per local concurrency slot, by default.
    pub const JOBS_PER_SLOT: usize = 8;

    /// Remote actions in flight for a run whose concurrency (`-j` or `[pipeline]`) is
    /// `concurrency`.
    pub fn jobs_for(&self, concurrency: usize) -> usize {
        match self.jobs {
            Some(n) => n as usize,
            None => concurrency.max(1).saturating_mul(Self::JOBS_PER_SLOT),
        }
    }

    /// The platform properties of `task`'s remote action: `[execution] platform` with the
    /// task's own (and `[defaults]`') merged over it, sorted by name as the API requires.
    pub fn platform_for(&self, task: &Task) -> BTreeMap<String, String> {
        let mut out = self.platform.clone();
        out.extend(task.platform.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }
}

/// Where a task's work was done, in reports (`executed_on`) and plans.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExecutedOn {
    /// On this machine.
    Local,
    /// On the remote executor (SPEC §11).
    Remote,
}

impl ExecutedOn {
    /// The word used in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutedOn::Local => "local",
            ExecutedOn::Remote => "remote",
        }
    }
}

/// A checked `grpc://HOST:PORT` or `grpcs://HOST[:PORT]` endpoint: a host, a port, nothing
/// else (no user, password, path, query or fragment).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrpcUrl {
    text: String,
    host: String,
    port: u16,
    tls: bool,
}

/// Why a text is not a [`GrpcUrl`]. Messages never repeat the text: a URL given in the
/// environment may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcUrlError {
    /// Not a URL at all.
    #[error("not a URL ({0})")]
    Malformed(String),
    /// A scheme other than grpc or grpcs.
    #[error("`{0}://` is not a gRPC scheme: use grpc:// (plain) or grpcs:// (TLS)")]
    Scheme(String),
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// `grpc://` without a port (there is no usual one).
    #[error("a grpc:// URL needs a port, e.g. grpc://HOST:50051")]
    NoPort,
    /// A user or password in the URL.
    #[error("a user or password in the URL would be sent in the clear and remembered")]
    Credentials,
    /// A path after the port.
    #[error("a gRPC endpoint has no path (`{0}`)")]
    Path(String),
    /// A query or fragment.
    #[error("a gRPC endpoint has no query or fragment")]
    Query,
}

impl GrpcUrlError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            GrpcUrlError::Malformed(_) | GrpcUrlError::NoHost | GrpcUrlError::Query => {
                "write the endpoint like \"grpc://rbe.internal:50051\" or \"grpcs://rbe.example.com\""
            }
            GrpcUrlError::Scheme(_) => {
                "gRPC runs over HTTP/2: grpc:// is plain text, grpcs:// is TLS (port 443 unless given)"
            }
            GrpcUrlError::NoPort => "add the port the executor listens on",
            GrpcUrlError::Credentials => {
                "send a token as gRPC metadata instead: `[execution] headers = { authorization = \"Bearer ${secret.NAME}\" }`"
            }
            GrpcUrlError::Path(_) => "the REAPI instance name goes in `[execution] instance`",
        }
    }
}

impl GrpcUrl {
    /// Port of `grpcs://` when none is written.
    pub const TLS_PORT: u16 = 443;

    /// Checks an endpoint URL.
    pub fn parse(text: &str) -> Result<Self, GrpcUrlError> {
        let url = url::Url::parse(text).map_err(|e| GrpcUrlError::Malformed(e.to_string()))?;
        let tls = match url.scheme() {
            "grpc" => false,
            "grpcs" => true,
            other => return Err(GrpcUrlError::Scheme(other.to_string())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GrpcUrlError::Credentials);
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => return Err(GrpcUrlError::NoHost),
        };
        let port = match (url.port(), tls) {
            (Some(p), _) => p,
            (None, true) => Self::TLS_PORT,
            (None, false) => return Err(GrpcUrlError::NoPort),
        };
        if !matches!(url.path(), "" | "/") {
            return Err(GrpcUrlError::Path(url.path().to_string()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(GrpcUrlError::Query);
        }
        Ok(Self {
            text: text.to_string(),
            host,
            port,
            tls,
        })
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host name or address (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 for a `grpcs://` URL without one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `grpcs://`: the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The endpoint as an `http://` or `https://` URI with its port, the form HTTP/2 client
    /// libraries connect to.
    pub fn http_uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for GrpcUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for GrpcUrl {
    type Error = GrpcUrlError;

    fn try_from(s: String) -> Result<Self, GrpcUrlError> {
        Self::parse(&s)
    }
}

impl From<GrpcUrl> for String {
    fn from(u: GrpcUrl) -> String {
        u.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_urls_need_a_host_and_port_and_nothing_more() {
        let u = GrpcUrl::parse("grpc://rbe.internal:50051").unwrap();
        assert_eq!(
            (u.host(), u.port(), u.tls()),
            ("rbe.internal", 50051, false)
        );
        assert_eq!(u.http_uri(), "http://rbe.internal:50051");
        let u = GrpcUrl::parse("grpcs://rbe.example.com/").unwrap();
        assert_eq!((u.port(), u.tls()), (443, true));
        assert_eq!(u.http_uri(), "https://rbe.example.com:443");
        let u = GrpcUrl::parse("grpc://[::1]:8980").unwrap();
        assert_eq!(u.http_uri(), "http://[::1]:8980");
        assert_eq!(
            GrpcUrl::parse("grpc://127.0.0.1:1").unwrap().host(),
            "127.0.0.1"
        );

        let err = |t: &str| GrpcUrl::parse(t).unwrap_err();
        assert!(matches!(err("not a url"), GrpcUrlError::Malformed(_)));
        assert_eq!(err("https://rbe:443"), GrpcUrlError::Scheme("https".into()));
        assert_eq!(err("grpc://rbe"), GrpcUrlError::NoPort);
        assert_eq!(err("grpc://u:hunter2@rbe:1"), GrpcUrlError::Credentials);
        assert!(
            !err("grpc://u:hunter2@rbe:1")
                .to_string()
                .contains("hunter2")
        );
        assert_eq!(err("grpc://rbe:1/main"), GrpcUrlError::Path("/main".into()));
        assert_eq!(err("grpc://rbe:1?x=1"), GrpcUrlError::Query);
        assert_eq!(err("grpc:rbe"), GrpcUrlError::NoHost);
        assert!(matches!(err("grpc://:1"), GrpcUrlError::Malformed(_)));
    }

    #[test]
    fn jobs_default_to_eight_per_slot() {
        let mut c = ExecutionConfig::default();
        assert_eq!(c.jobs_for(4), 32);
        assert_eq!(c.jobs_for(0), 8);
        c.jobs = Some(3);
        assert_eq!(c.jobs_for(4), 3);
    }

    #[test]
    fn serde_round_trips_through_the_text() {
        let u = GrpcUrl::parse("grpcs://rbe:9092").unwrap();
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, "\"grpcs://rbe:9092\"");
        assert_eq!(serde_json::from_str::<GrpcUrl>(&json).unwrap(), u);
        assert!(serde_json::from_str::<GrpcUrl>("\"http://x:1\"").is_err());
    }
}
