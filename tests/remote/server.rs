//! A tiny in-process Bazel-HTTP-protocol cache: GET/PUT/HEAD over a HashMap, with switches
//! for the failures a real remote has, and a log of every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A working cache.
    Normal,
    /// Every request gets `500 Internal Server Error`.
    Fail500,
    /// Requests are read and never answered.
    Hang,
    /// `GET /cas/...` returns the stored bytes with the first byte flipped.
    CorruptBlobs,
    /// A read-only cache: `PUT` gets `403 Forbidden`.
    ForbidPut,
}

#[derive(Default)]
struct State {
    store: HashMap<String, Vec<u8>>,
    log: Vec<(String, String)>,
    mode: Option<Mode>,
}

/// The server; it runs until the test process ends.
#[derive(Clone)]
pub struct CacheServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl CacheServer {
    /// Serves on a listener the caller bound (`127.0.0.1:0`).
    pub fn start(listener: TcpListener) -> Self {
        let server = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
        };
        let s = server.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                thread::spawn(move || s.serve(conn));
            }
        });
        server
    }

    /// Binds `127.0.0.1:0` and serves there.
    pub fn new() -> Self {
        Self::start(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Every request so far as (method, path).
    pub fn log(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Replaces a stored entry (to damage it).
    pub fn put(&self, path: &str, data: Vec<u8>) {
        self.state.lock().unwrap().store.insert(path.into(), data);
    }

    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().store.get(path).cloned()
    }

    /// Stored paths (`/ac/<key>`, `/cas/<sha256>`), sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state.lock().unwrap().store.keys().cloned().collect();
        v.sort();
        v
    }

    fn serve(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut writer = conn;
        // Keep-alive: answer requests until the client closes the connection.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let mode = {
                let mut st = self.state.lock().unwrap();
                st.log.push((method.clone(), path.clone()));
                st.mode.unwrap_or(Mode::Normal)
            };
            let (status, payload) = match mode {
                Mode::Hang => {
                    thread::sleep(Duration::from_secs(30));
                    return;
                }
                Mode::Fail500 => ("500 Internal Server Error", Vec::new()),
                Mode::ForbidPut if method == "PUT" => ("403 Forbidden", Vec::new()),
                Mode::Normal | Mode::CorruptBlobs | Mode::ForbidPut => {
                    let mut st = self.state.lock().unwrap();
                    match method.as_str() {
                        "PUT" => {
                            st.store.insert(path.clone(), body);
                            ("201 Created", Vec::new())
                        }
                        "GET" | "HEAD" => match st.store.get(&path) {
                            Some(data) => {
                                let mut data = data.clone();
                                if mode == Mode::CorruptBlobs
                                    && path.starts_with("/cas/")
                                    && !data.is_empty()
                                {
                                    data[0] ^= 0xff;
                                }
                                ("200 OK", data)
                            }
                            None => ("404 Not Found", Vec::new()),
                        },
                        _ => ("405 Method Not Allowed", Vec::new()),
                    }
                }
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n",
                payload.len()
            );
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            if method != "HEAD" && writer.write_all(&payload).is_err() {
                return;
            }
        }
    }
}
