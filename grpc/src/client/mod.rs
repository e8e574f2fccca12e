//! Clients: the castore and store service traits implemented over one
//! shared tonic channel (HTTP/2, connected lazily, reconnected on demand).
//!
//! Everything received is checked before it is returned: each directory
//! against its digest (and, for a closure, against the directories that name
//! it), each chunk against its digest, a blob read whole against the blob's
//! digest once its last byte has been read. Unary calls have a deadline,
//! streams an idle timeout between messages, and reads are retried with
//! exponential backoff when the service is unreachable.

mod blob;
mod call;
mod directory;
mod failover;
mod pathinfo;

use std::sync::Arc;
use std::time::Duration;

use storefs_castore::{GrpcEndpoint, StoreUrl, StoreUrlError};
use storefs_store::Services;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use blob::GrpcBlobService;
pub use directory::GrpcDirectoryService;
pub use failover::{RemoteFigures, Replicas, ReplicatedServices, connect_replicas, parse_replicas};
pub use pathinfo::GrpcPathInfoService;

use crate::auth::{BearerInterceptor, Token};
use crate::limits;

/// How a client talks to a service.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent as `authorization: Bearer <token>` on every call.
    pub token: Option<Token>,
    /// Bound on establishing the connection.
    pub connect_timeout: Duration,
    /// Deadline of a unary call, and of the wait for a stream's first
    /// message.
    pub call_timeout: Duration,
    /// Longest wait for the next message of a stream.
    pub idle_timeout: Duration,
    /// Extra attempts of a read after the service was unreachable.
    pub retries: u32,
    /// Wait before the first retry; doubled after each attempt.
    pub initial_backoff: Duration,
    /// Cap on the wait between retries.
    pub max_backoff: Duration,
    /// Largest message decoded from the service.
    pub max_decoding_message_size: usize,
    /// With several replicas ([`connect_replicas`]): how long one that
    /// failed is skipped, after its first failure in a row; doubled after
    /// each further one.
    pub shun_initial: Duration,
    /// Cap on how long a failed replica is skipped.
    pub shun_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            token: None,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            retries: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_decoding_message_size: limits::MAX_DECODING_MESSAGE_SIZE,
            shun_initial: Duration::from_secs(1),
            shun_max: Duration::from_secs(30),
        }
    }
}

/// Why a client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL cannot be parsed.
    #[error(transparent)]
    Url(#[from] StoreUrlError),
    /// The URL names a store that is not a gRPC service.
    #[error("{0} is not a gRPC store URL (grpc://HOST:PORT or grpc+unix:///PATH)")]
    NotGrpc(String),
    /// The endpoint was refused by the transport (a host name it cannot use,
    /// a socket path that is not UTF-8).
    #[error("{endpoint}: {reason}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// What the transport said.
        reason: String,
    },
    /// Called outside a tokio runtime.
    #[error("the gRPC client must be created inside a tokio runtime")]
    NoRuntime,
    /// A list of replicas with none in it.
    #[error("no gRPC endpoint given")]
    NoEndpoint,
    /// One entry of a list of replicas is not a gRPC endpoint.
    #[error("replica #{index}: {reason}")]
    Replica {
        /// Its place in the list, from 1.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The services of one remote store, sharing one connection; it derefs to
/// the [`Services`] bundle (NAR sizes and hashes are computed by the
/// service).
#[derive(Clone)]
pub struct GrpcServices {
    /// The bundle every front-end takes.
    pub services: Services,
    /// The same blob client as `services.blob`, for what the trait lacks:
    /// batched chunk reads ([`GrpcBlobService::read_chunks`]).
    pub grpc_blob: GrpcBlobService,
}

impl std::ops::Deref for GrpcServices {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

impl From<GrpcServices> for Services {
    fn from(g: GrpcServices) -> Services {
        g.services
    }
}

/// The transport every generated client is built on.
pub(crate) type Transport = InterceptedService<Channel, BearerInterceptor>;

/// What the three clients share: the channel, the token, the config.
#[derive(Clone)]
pub(crate) struct Conn {
    channel: Channel,
    interceptor: BearerInterceptor,
    pub(crate) config: Arc<ClientConfig>,
    /// The endpoint, for error messages.
    pub(crate) name: Arc<str>,
}

impl Conn {
    /// A lazily connecting channel to `endpoint`. Must run inside a tokio
    /// runtime (the channel spawns its worker).
    pub(crate) fn new(endpoint: &GrpcEndpoint, config: ClientConfig) -> Result<Self, ConnectError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConnectError::NoRuntime);
        }
        let name = StoreUrl::Grpc {
            endpoint: endpoint.clone(),
        }
        .to_string();
        let transport_err = |reason: String| ConnectError::Transport {
            endpoint: name.clone(),
            reason,
        };
        let target = match endpoint {
            GrpcEndpoint::Tcp { host, port } => format!("http://{host}:{port}"),
            GrpcEndpoint::Unix { path } => {
                let p = path
                    .to_str()
                    .ok_or_else(|| transport_err("the socket path is not UTF-8".into()))?;
                format!("unix:{p}")
            }
            _ => {
                return Err(transport_err(
                    "this kind of endpoint is not supported".into(),
                ));
            }
        };
        let keepalive = config.idle_timeout.max(Duration::from_secs(1));
        let channel = tonic::transport::Endpoint::from_shared(target)
            .map_err(|e| transport_err(e.to_string()))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(limits::STREAM_WINDOW)
            .initial_connection_window_size(limits::CONNECTION_WINDOW)
            .max_frame_size(limits::MAX_FRAME_SIZE)
            .http2_keep_alive_interval(keepalive)
            .keep_alive_timeout(keepalive)
            .keep_alive_while_idle(false)
            .connect_lazy();
        Ok(Self {
            channel,
            interceptor: BearerInterceptor::new(config.token.as_ref()),
            config: Arc::new(config),
            name: name.into(),
        })
    }

    pub(crate) fn blob_client(
        &self,
    ) -> crate::proto::castore::blob_service_client::BlobServiceClient<Transport> {
        crate::proto::castore::blob_service_client::BlobServiceClient::with_interceptor(
            self.channel.clone(),
            self.interceptor.clone(),
        )
        .max_decoding_message_size(self.config.max_decoding_message_size)
    }

    pub(crate) fn directory_client(
        &self,
    ) -> crate::proto::castore::directory_service_client::DirectoryServiceClient<Transport> {
        crate::proto::castore::directory_service_client::DirectoryServiceClient::with_interceptor(
            self.channel.clone(),
            self.interceptor.clone(),
        )
        .max_decoding_message_size(self.config.max_decoding_message_size)
    }

    pub(crate) fn chunk_client(
        &self,
    ) -> crate::proto::storefs::chunk_service_client::ChunkServiceClient<Transport> {
        crate::proto::storefs::chunk_service_client::ChunkServiceClient::with_interceptor(
            self.channel.clone(),
            self.interceptor.clone(),
        )
        .max_decoding_message_size(self.config.max_decoding_message_size)
    }

    pub(crate) fn path_info_client(
        &self,
    ) -> crate::proto::store::path_info_service_client::PathInfoServiceClient<Transport> {
        crate::proto::store::path_info_service_client::PathInfoServiceClient::with_interceptor(
            self.channel.clone(),
            self.interceptor.clone(),
        )
        .max_decoding_message_size(self.config.max_decoding_message_size)
    }
}

/// Clients for the store at `url` (`grpc://HOST:PORT`, `grpc+http://…`,
/// `grpc+unix:///PATH`, `grpc+unix:/PATH`), sharing one connection that is
/// opened on first use. The URL is parsed by [`StoreUrl`].
///
/// You must call it inside a tokio runtime. Nothing is sent until a service
/// is used, so an unreachable service shows as errors from the calls (after
/// their retries), not here.
pub fn connect(url: &str, config: ClientConfig) -> Result<GrpcServices, ConnectError> {
    match StoreUrl::parse(url)? {
        StoreUrl::Grpc { endpoint } => connect_endpoint(&endpoint, config),
        _ => Err(ConnectError::NotGrpc(url.to_string())),
    }
}

/// Like [`connect`], for a URL already parsed (`StoreUrl::Grpc { endpoint }`).
pub fn connect_endpoint(
    endpoint: &GrpcEndpoint,
    config: ClientConfig,
) -> Result<GrpcServices, ConnectError> {
    let conn = Conn::new(endpoint, config)?;
    let path_info = Arc::new(GrpcPathInfoService::new(conn.clone()));
    let grpc_blob = GrpcBlobService::new(conn.clone());
    Ok(GrpcServices {
        services: Services {
            blob: Arc::new(grpc_blob.clone()),
            directory: Arc::new(GrpcDirectoryService::new(conn)),
            path_info: path_info.clone(),
            nar_calculation: path_info,
        },
        grpc_blob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_grpc_urls_connect() {
        assert!(connect("grpc://127.0.0.1:1", ClientConfig::default()).is_ok());
        assert!(connect("grpc+unix:///tmp/x.sock", ClientConfig::default()).is_ok());
        assert!(matches!(
            connect("memory:", ClientConfig::default()),
            Err(ConnectError::NotGrpc(_))
        ));
        assert!(matches!(
            connect("grpc://nohost", ClientConfig::default()),
            Err(ConnectError::Url(_))
        ));
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            connect("grpc://127.0.0.1:1", ClientConfig::default()),
            Err(ConnectError::NoRuntime)
        ));
    }
}
