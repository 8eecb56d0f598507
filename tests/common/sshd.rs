//! Debian's sshd, started by a test on a loopback port, letting the current user in.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Sshd {
    child: Child,
    pub log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Serves `host_key` (OpenSSH PEM), with `cert` if given, on 127.0.0.1:`port`;
    /// `authorized` is an authorized_keys line. Returns once the banner is sent.
    pub fn start(
        dir: &Path,
        port: u16,
        host_key: &str,
        cert: Option<&str>,
        authorized: &str,
    ) -> Sshd {
        let sshd = super::require("sshd", "openssh-server");
        std::fs::create_dir_all("/run/sshd").ok(); // privilege separation directory
        std::fs::create_dir_all(dir).unwrap();
        baton::fsutil::write_atomic(
            &dir.join("ssh_host_ed25519_key"),
            host_key.as_bytes(),
            0o600,
        )
        .unwrap();
        std::fs::write(dir.join("authorized_keys"), authorized).unwrap();
        let mut conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ssh_host_ed25519_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n",
            d = dir.display()
        );
        if let Some(cert) = cert {
            std::fs::write(dir.join("ssh_host_ed25519_key-cert.pub"), cert).unwrap();
            conf.push_str(&format!(
                "HostCertificate {}/ssh_host_ed25519_key-cert.pub\n",
                dir.display()
            ));
        }
        let config = dir.join("sshd_config");
        std::fs::write(&config, conf).unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut sshd = Sshd { child, log };
        super::wait_for("sshd's banner", Duration::from_secs(10), || {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!(
                    "sshd exited ({status}):\n{}",
                    std::fs::read_to_string(&sshd.log).unwrap_or_default()
                );
            }
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).ok()?;
            buf.starts_with(b"SSH-2.0").then_some(())
        });
        sshd
    }
}

/// The user tests log in as.
pub fn current_user() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}
