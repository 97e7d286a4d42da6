//! [`Client`]: one connection (HTTP/2, TLS for `grpcs://`) to a REAPI server and the calls
//! taskrun makes on it. Every call carries the instance name and the configured metadata
//! headers (`authorization`, ...); header values never appear in a message.
//!
//! The calls are split by service: `cas` (FindMissingBlobs, batch and ByteStream
//! transfers), `execute` (ActionCache, Execute, WaitExecution, CancelOperation), `progress` (what an
//! execution's wait has seen, and its deadline).

mod cas;
mod execute;
pub(crate) mod fetch;
mod progress;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::action::ApiVersion;
use super::error::ReapiError;
use super::proto;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::longrunning::operations_client::OperationsClient;

pub use cas::{BlobSource, UploadBlob, UploadStats};
pub use progress::Deadline;

/// The channel every generated client is built on: headers added to each call.
type Svc = InterceptedService<Channel, Headers>;

/// The batch limit assumed when the server sets none, and the most any batch carries: gRPC
/// servers refuse messages above 4 MiB by default.
const DEFAULT_BATCH_BYTES: u64 = 4 << 20;
/// What a batch entry costs beyond its data (digest, framing), so a full batch stays under
/// the server's limit.
const BATCH_ENTRY_OVERHEAD: u64 = 128;
/// The largest message taken from the server (a batch of reads, a Tree, an ActionResult).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long a server may take to answer its first call (GetCapabilities, which any server
/// answers at once) before it counts as unreachable.
const FIRST_ANSWER: Duration = Duration::from_secs(10);

/// How to reach a server.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The REAPI `instance_name` (`[execution] instance`); often empty.
    pub instance: String,
    /// gRPC metadata sent on every call (`authorization = "Bearer ..."`).
    pub headers: Vec<(String, String)>,
    /// TCP + TLS connect limit; `None` for 5 s.
    pub connect_timeout: Option<Duration>,
    /// The roots `grpcs://` trusts; `None` for the `SSL_CERT_FILE` bundle when set, else the
    /// webpki roots.
    pub tls_roots: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// Executions that may wait on an open stream at once (`[execution] streams`); the
    /// others are polled. `None` for no limit (every execution streams).
    pub open_streams: Option<usize>,
}

/// What the server offers, as far as taskrun cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// sha256 is among the CAS's digest functions (taskrun speaks no other).
    pub sha256: bool,
    /// Remote execution is enabled (and with sha256).
    pub exec_enabled: bool,
    /// Clients may write to the ActionCache (`UpdateActionResult`).
    pub update_enabled: bool,
    /// Most bytes per batch call (0 from the server is taken as 4 MiB).
    pub max_batch_bytes: u64,
    /// The newest API version the server speaks.
    pub api_version: ApiVersion,
}

impl Capabilities {
    /// Ok when actions can be executed here: sha256 and execution both offered.
    pub fn check_execution(&self) -> Result<(), ReapiError> {
        self.check_cache()?;
        if !self.exec_enabled {
            return Err(ReapiError::Config(
                "the server does not offer remote execution (exec_enabled is false)".into(),
            ));
        }
        Ok(())
    }

    /// Ok when the CAS and ActionCache can be used: sha256 offered.
    pub fn check_cache(&self) -> Result<(), ReapiError> {
        if !self.sha256 {
            return Err(ReapiError::Config(
                "the server's CAS does not offer sha256 digests".into(),
            ));
        }
        if self.api_version.major != 2 {
            return Err(ReapiError::Config(format!(
                "the server speaks REAPI {}, not 2.x",
                self.api_version
            )));
        }
        Ok(())
    }

    fn from_proto(c: &proto::ServerCapabilities) -> Self {
        let sha256 = proto::digest_function::Value::Sha256 as i32;
        let cache = c.cache_capabilities.as_ref();
        let exec = c.execution_capabilities.as_ref();
        let version = c
            .high_api_version
            .as_ref()
            .or(c.deprecated_api_version.as_ref())
            .map_or(ApiVersion::V2_0, |v| ApiVersion {
                major: v.major,
                minor: v.minor,
            });
        let server_batch = cache.map_or(0, |c| {
            u64::try_from(c.max_batch_total_size_bytes).unwrap_or(0)
        });
        Self {
            sha256: cache.is_some_and(|c| c.digest_functions.contains(&sha256)),
            exec_enabled: exec.is_some_and(|e| {
                e.exec_enabled
                    && (e.digest_function == sha256 || e.digest_functions.contains(&sha256))
            }),
            update_enabled: cache
                .and_then(|c| c.action_cache_update_capabilities.as_ref())
                .is_some_and(|u| u.update_enabled),
            max_batch_bytes: match server_batch {
                0 => DEFAULT_BATCH_BYTES,
                n => n.min(DEFAULT_BATCH_BYTES),
            },
            api_version: version,
        }
    }
}

/// Adds the configured metadata to every call.
#[derive(Clone)]
struct Headers(Arc<Vec<(AsciiMetadataKey, AsciiMetadataValue)>>);

impl Interceptor for Headers {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let meta = req.metadata_mut();
        for (k, v) in self.0.iter() {
            meta.insert(k.clone(), v.clone());
        }
        Ok(req)
    }
}

/// A connection to one REAPI server and instance; cheap to clone (clones share it).
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    headers: Headers,
    instance: Arc<str>,
    /// The URL without user and password, for messages.
    shown: Arc<str>,
    caps: Arc<OnceCell<Capabilities>>,
    /// How many first calls went unanswered: a caller that waited behind one of them fails
    /// with it rather than waiting as long again.
    unanswered: Arc<std::sync::atomic::AtomicU64>,
    /// A permit per execution waiting on an open stream (see [`ClientOptions::open_streams`]).
    streams: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shown)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `url` (`grpc://host:port`, or `grpcs://host:port` for TLS, trusting the
    /// webpki roots or the `SSL_CERT_FILE` bundle). A bad URL or header is a configuration
    /// error; a server that cannot be reached, a cluster failure.
    pub async fn connect(url: &str, options: &ClientOptions) -> Result<Self, ReapiError> {
        let (endpoint, shown) = endpoint(url, options)?;
        let headers = headers(&options.headers)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ReapiError::from_transport(&format!("cannot connect to {shown}"), &e))?;
        Ok(Self {
            channel,
            headers: Headers(Arc::new(headers)),
            instance: options.instance.as_str().into(),
            shown: shown.into(),
            caps: Arc::new(OnceCell::new()),
            unanswered: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            streams: Arc::new(tokio::sync::Semaphore::new(
                options
                    .open_streams
                    .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS)
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
        })
    }

    /// The server's URL, user and password removed.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The instance name calls are made for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The server's capabilities (asked once per client, then remembered).
    pub async fn capabilities(&self) -> Result<Capabilities, ReapiError> {
        use std::sync::atomic::Ordering::SeqCst;
        let no_answer =
            || tonic::Status::unavailable(format!("no answer within {} s", FIRST_ANSWER.as_secs()));
        let seen = self.unanswered.load(SeqCst);
        self.caps
            .get_or_try_init(|| async {
                if self.unanswered.load(SeqCst) != seen {
                    return Err(ReapiError::from_status("GetCapabilities", &no_answer()));
                }
                let mut c = proto::capabilities_client::CapabilitiesClient::new(self.svc())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES);
                let call = c.get_capabilities(proto::GetCapabilitiesRequest {
                    instance_name: self.instance.to_string(),
                });
                // The first call to a server: one that took the connection and never answers
                // (no HTTP/2 either) is as unreachable as one that refused it.
                let resp = match tokio::time::timeout(FIRST_ANSWER, call).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        self.unanswered.fetch_add(1, SeqCst);
                        Err(no_answer())
                    }
                }
                .map_err(|s| ReapiError::from_status("GetCapabilities", &s))?;
                Ok(Capabilities::from_proto(resp.get_ref()))
            })
            .await
            .copied()
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.headers.clone())
    }

    fn cas(
        &self,
    ) -> proto::content_addressable_storage_client::ContentAddressableStorageClient<Svc> {
        proto::content_addressable_storage_client::ContentAddressableStorageClient::new(self.svc())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn bytestream(&self) -> ByteStreamClient<Svc> {
        ByteStreamClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn action_cache(&self) -> proto::action_cache_client::ActionCacheClient<Svc> {
        proto::action_cache_client::ActionCacheClient::new(self.svc())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn execution(&self) -> proto::execution_client::ExecutionClient<Svc> {
        proto::execution_client::ExecutionClient::new(self.svc())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn operations(&self) -> OperationsClient<Svc> {
        OperationsClient::new(self.svc()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The batch limit, asking the server once if not known yet.
    async fn batch_limit(&self) -> Result<u64, ReapiError> {
        Ok(self.capabilities().await?.max_batch_bytes)
    }

    /// `{instance}/` or nothing: resource names have no leading `/` for an empty instance.
    fn resource_prefix(&self) -> String {
        if self.instance.is_empty() {
            String::new()
        } else {
            format!("{}/", self.instance)
        }
    }
}

/// The endpoint for `url`, and the URL as shown in messages.
fn endpoint(url: &str, options: &ClientOptions) -> Result<(Endpoint, String), ReapiError> {
    let bad = |why: &str| ReapiError::Config(format!("bad remote executor URL {url:?}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "grpc" => false,
        "grpcs" => true,
        _ => return Err(bad("the scheme must be grpc:// or grpcs://")),
    };
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(bad("a path or query has no meaning here (use `instance`)"));
    }
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let scheme = if tls { "https" } else { "http" };
    let shown = format!("{}://{host}:{port}", parsed.scheme());
    let mut ep = Endpoint::from_shared(format!("{scheme}://{host}:{port}"))
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(5)))
        // gRPC servers refuse pings more often than every 5 minutes on a connection that
        // sends no data (an Execute stream waiting on a queued action is one), and close it
        // with "too many pings" after two; pings only while a call is open, no sooner.
        .http2_keep_alive_interval(Duration::from_secs(300))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(false)
        .tcp_nodelay(true)
        .user_agent(concat!("taskrun/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| bad(&e.to_string()))?;
    if tls {
        let roots = match &options.tls_roots {
            Some(given) => crate::tls_roots::root_store(Some(given)),
            None => crate::tls_roots::from_env()
                .and_then(|r| crate::tls_roots::root_store(r.as_deref())),
        }
        .map_err(ReapiError::Config)?;
        let config = ClientTlsConfig::new()
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'))
            .trust_anchors(roots.roots);
        ep = ep.tls_config(config).map_err(|e| bad(&e.to_string()))?;
    }
    Ok((ep, shown))
}

/// The headers as gRPC metadata; a name or value gRPC cannot carry is a configuration error
/// that names the header, never its value.
fn headers(
    pairs: &[(String, String)],
) -> Result<Vec<(AsciiMetadataKey, AsciiMetadataValue)>, ReapiError> {
    pairs
        .iter()
        .map(|(k, v)| {
            let name = k.to_ascii_lowercase();
            let key = AsciiMetadataKey::from_bytes(name.as_bytes())
                .ok()
                .filter(|_| !name.ends_with("-bin"))
                .ok_or_else(|| {
                    ReapiError::Config(format!("header {k:?} is not a valid gRPC metadata name"))
                })?;
            let value = AsciiMetadataValue::try_from(v.as_str()).map_err(|_| {
                ReapiError::Config(format!(
                    "the value of header {k:?} is not printable ASCII (gRPC metadata)"
                ))
            })?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_credentials() {
        let o = ClientOptions::default();
        let (ep, shown) = endpoint("grpc://user:pw@127.0.0.1:8980", &o).unwrap();
        assert_eq!(shown, "grpc://127.0.0.1:8980");
        assert_eq!(ep.uri().to_string(), "http://127.0.0.1:8980/");
        let (_, shown) = endpoint("grpcs://rbe.example:443", &o).unwrap();
        assert_eq!(shown, "grpcs://rbe.example:443");
        for bad in ["http://h:1", "grpc://h:1/x", "nonsense", "grpc://:1"] {
            assert!(
                matches!(endpoint(bad, &o), Err(ReapiError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn headers_are_validated_without_showing_values() {
        let ok = headers(&[("Authorization".into(), "Bearer abc".into())]).unwrap();
        assert_eq!(ok[0].0.as_str(), "authorization");
        let err = headers(&[("authorization".into(), "Bearer sec\nret".into())]).unwrap_err();
        assert!(!err.to_string().contains("sec"));
        assert!(headers(&[("bad name".into(), "v".into())]).is_err());
        assert!(headers(&[("x-bin".into(), "v".into())]).is_err());
    }

    #[test]
    fn capabilities_are_read_with_defaults() {
        let sha = proto::digest_function::Value::Sha256 as i32;
        let mut c = proto::ServerCapabilities {
            cache_capabilities: Some(proto::CacheCapabilities {
                digest_functions: vec![sha],
                max_batch_total_size_bytes: 4_193_280,
                ..Default::default()
            }),
            execution_capabilities: Some(proto::ExecutionCapabilities {
                digest_function: sha,
                exec_enabled: true,
                ..Default::default()
            }),
            high_api_version: Some(bazel_remote_apis::build::bazel::semver::SemVer {
                major: 2,
                minor: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let caps = Capabilities::from_proto(&c);
        assert!(caps.check_execution().is_ok());
        assert_eq!(caps.max_batch_bytes, 4_193_280);
        assert_eq!(caps.api_version, ApiVersion::V2_2);
        c.execution_capabilities = None;
        c.cache_capabilities = Some(proto::CacheCapabilities::default());
        let caps = Capabilities::from_proto(&c);
        assert_eq!(caps.max_batch_bytes, DEFAULT_BATCH_BYTES);
        assert!(matches!(caps.check_cache(), Err(ReapiError::Config(_))));
        assert!(matches!(caps.check_execution(), Err(ReapiError::Config(_))));
    }
}
