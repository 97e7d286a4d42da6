//! The fault-injecting server on its own multi-thread runtime, so it keeps serving while a
//! test blocks on the `taskrun` child process. Shared by the test binaries that run the CLI.

use std::ops::Deref;

use crate::fault_server::FaultServer;

/// A [`FaultServer`] on 127.0.0.1:0, served by a runtime this value owns.
pub struct Http {
    // Dropped before the runtime: the accept loop is aborted while the runtime still exists.
    server: FaultServer,
    _rt: tokio::runtime::Runtime,
}

impl Http {
    /// Binds 127.0.0.1:0 and serves on two runtime threads.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let server = rt.block_on(async {
            FaultServer::serve(tokio::net::TcpListener::from_std(listener).unwrap())
        });
        Self { server, _rt: rt }
    }
}

impl Deref for Http {
    type Target = FaultServer;
    fn deref(&self) -> &FaultServer {
        &self.server
    }
}
