//! nginx with WebDAV as a remote cache, for one end-to-end check when nginx is installed.
//!
//! The test binds `127.0.0.1:0` itself and hands the bound socket to nginx through the
//! `NGINX` environment variable (nginx's own socket-inheritance mechanism), so no port is
//! ever picked first and bound later.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    _listener: TcpListener,
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

impl Nginx {
    /// `None` when nginx is not installed.
    pub fn start() -> Option<Self> {
        let bin = find_nginx()?;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let dav = dir.path().join("dav");
        std::fs::create_dir_all(&dav).unwrap();
        // Workers may run as another user (nobody, under root): let them write the store.
        std::fs::set_permissions(&dav, std::fs::Permissions::from_mode(0o777)).unwrap();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            root {d}/dav;
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let fd = listener.as_raw_fd();
        // The child inherits the bound socket: clear close-on-exec on it.
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        }
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .env("NGINX", format!("{fd};"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Self {
            child,
            port,
            _dir: dir,
            _listener: listener,
        };
        nginx.wait_ready();
        Some(nginx)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = self.dir_file("nginx.pid");
        while Instant::now() < deadline && !pid.exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn dir_file(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master (by its pid) makes it stop its workers too; SIGKILL would
        // orphan them.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling a child this test spawned and has not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}
