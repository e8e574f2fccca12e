//! The conformance suites: what every blob, directory and path info service
//! must do, whatever its backend. Each backend's test file instantiates them
//! with [`blob_suite!`](crate::blob_suite) and
//! [`directory_suite!`](crate::directory_suite), and calls
//! [`path_info::conformance`]; the memory, redb, cache and gRPC services all
//! run the same ones.

pub mod blob;
pub mod directory;
pub mod path_info;

/// Instantiate the blob suite for a backend. `$make` is an expression
/// giving `(Arc<dyn BlobService>, guard)`; the guard lives for the test.
/// An optional first argument names the test module (default
/// `blob_conformance`), so one file can run the suite on several setups.
#[macro_export]
macro_rules! blob_suite {
    ($make:expr) => {
        $crate::blob_suite!(blob_conformance, $make);
    };
    ($module:ident, $make:expr) => {
        mod $module {
            macro_rules! t {
                ($n:ident) => {
                    #[tokio::test]
                    async fn $n() {
                        let (svc, _guard) = $make;
                        $crate::suites::blob::$n(svc).await;
                    }
                };
            }
            t!(blob_small_round_trip);
            t!(blob_empty);
            t!(blob_missing);
            t!(blob_chunk_boundaries);
            t!(blob_multi_mib);
            t!(blob_close_twice);
            t!(blob_concurrent_writers);
            t!(blob_chunk_is_has);
        }
    };
}

/// Instantiate the directory suite for a backend; like [`blob_suite`]. A
/// third argument `streamed` marks a putter that streams to a service and
/// may report a refusal only at a later put or at close.
#[macro_export]
macro_rules! directory_suite {
    (@tests $module:ident, $make:expr, $wrong_order:ident) => {
        mod $module {
            macro_rules! t {
                ($n:ident) => {
                    #[tokio::test]
                    async fn $n() {
                        let (svc, _guard) = $make;
                        $crate::suites::directory::$n(svc).await;
                    }
                };
            }
            t!(dir_put_get);
            t!(dir_missing);
            t!(dir_put_without_child);
            t!(dir_closure_and_recursive_order);
            t!($wrong_order);
            t!(dir_closure_disconnected);
            t!(dir_closure_on_stored_child);
            t!(dir_concurrent_putters);
        }
    };
    ($make:expr) => {
        $crate::directory_suite!(directory_conformance, $make);
    };
    ($module:ident, $make:expr) => {
        $crate::directory_suite!(@tests $module, $make, dir_closure_wrong_order);
    };
    ($module:ident, $make:expr, streamed) => {
        $crate::directory_suite!(@tests $module, $make, dir_closure_wrong_order_streamed);
    };
}
