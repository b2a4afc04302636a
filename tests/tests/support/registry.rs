//! A registry on loopback (Debian's `docker-registry`, the reference "distribution" server)
//! holding the images a release publishes, pushed as a release pushes them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{root, run};

/// The images a release publishes, by the name compose knows them by.
pub const IMAGES: [(&str, &str); 3] = [
    ("led", "qwiic-led-service"),
    ("button", "qwiic-button-service"),
    ("simulator", "qwiic-simulator"),
];

/// The registry on a loopback port, its storage in a temporary folder; stopped when dropped.
pub struct Registry {
    /// host:port.
    pub address: String,
    child: Child,
    dir: PathBuf,
}

impl Registry {
    /// Starts one, empty.
    pub fn start() -> Registry {
        let address = test_kit::unused_address().to_string();
        let dir = std::env::temp_dir().join(format!(
            "qwiic-registry-{}-{}",
            std::process::id(),
            address.replace([':', '.'], "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {address}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("docker-registry: {error} (scripts/test-deps installs it)")
            });
        let registry = Registry {
            address,
            child,
            dir,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                Instant::now() < until,
                "docker-registry is not listening on {} after 10 s",
                registry.address
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }
    /// The images scripts/build-images made (`latest-<arch>`), retagged `<tag>-<arch>` under
    /// `repository` on this registry and published with scripts/publish-images: one list per
    /// image. What publish-images printed (each list with its digest).
    pub fn publish(&self, repository: &str, tag: &str) -> String {
        assert!(
            repository.starts_with(&self.address),
            "{repository} is not on this registry"
        );
        for (_, name) in IMAGES {
            for arch in ["amd64", "arm64", "armv7"] {
                run(Command::new("docker").args([
                    "tag",
                    &format!("ghcr.io/qwiic-containers/{name}:latest-{arch}"),
                    &format!("{repository}/{name}:{tag}-{arch}"),
                ]));
            }
        }
        let published = run(Command::new(root().join("scripts/publish-images")).args([
            "--repository",
            repository,
            "--tag",
            tag,
        ]));
        String::from_utf8_lossy(&published.stdout).into_owned()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
