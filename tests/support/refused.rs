//! A loopback port that refuses every connection for as long as the test holds it.
//!
//! Binding a listener on port 0 and dropping it frees the port for the next test that binds
//! port 0 (tests run in parallel): a check meant to be refused then finds a server. A socket
//! bound but never listening keeps the port taken and answers every connection with a reset.
#![allow(dead_code)]

use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

/// Holds a loopback port nothing listens on; connections to [`RefusedPort::addr`] are refused.
pub struct RefusedPort {
    _socket: Socket,
    addr: SocketAddr,
}

impl RefusedPort {
    pub fn new() -> Self {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        Self {
            _socket: socket,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
