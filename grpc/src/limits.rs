//! The limits the server and the clients enforce, in one place.
//!
//! Every message a peer sends is bounded before it is decoded
//! ([`MAX_DECODING_MESSAGE_SIZE`]); blob contents travel in messages of at
//! most [`READ_MESSAGE_SIZE`] bytes so that neither side ever holds a whole
//! blob in memory.

use std::time::Duration;

/// Largest protobuf message either side decodes: 4 MiB. A `BlobChunk` of
/// [`READ_MESSAGE_SIZE`] or a directory with thousands of entries fits.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 4 << 20;

/// Largest `BlobChunk.data` the server sends and the client writes: 1 MiB.
pub const READ_MESSAGE_SIZE: usize = 1 << 20;

/// Largest chunk the client collects for `read_chunk` (a chunk, or a blob
/// stored unchunked): 64 MiB. Bigger blobs must be read with `open_read`,
/// which streams.
pub const MAX_READ_CHUNK_LEN: usize = 64 << 20;

/// Default bound on concurrent requests per connection on the server.
pub const DEFAULT_CONCURRENCY_PER_CONNECTION: usize = 256;

/// Default bound on concurrent HTTP/2 streams per connection on the server.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;

/// Default time the server lets in-flight streams run after shutdown starts.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control window per stream (both sides): 8 MiB, so that one
/// stream can keep a fast link busy without waiting for window updates.
pub const STREAM_WINDOW: u32 = 8 << 20;

/// HTTP/2 flow-control window per connection (both sides): 32 MiB.
pub const CONNECTION_WINDOW: u32 = 32 << 20;

/// Largest HTTP/2 frame either side accepts: 1 MiB (the protocol's
/// default is 16 KiB), so that a blob message crosses in one or a few frames
/// rather than 64.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

/// Number of `BlobChunk` / `Directory` messages a client writer queues
/// before a `write` waits for the network.
pub const WRITE_QUEUE_MESSAGES: usize = 4;

/// Largest number of directories the client accepts in one recursive `Get`
/// (a bound on the memory used to track the closure).
pub const MAX_CLOSURE_DIRECTORIES: usize = 1 << 22;

/// Most digests in one `ReadChunks` request.
pub const MAX_BATCH_DIGESTS: usize = 1024;

/// Most bytes one `read_chunks` call of the client collects.
pub const MAX_BATCH_BYTES: usize = 256 << 20;
