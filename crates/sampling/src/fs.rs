//! Filesystem space and inodes. Each `statfs` runs on its own thread with a deadline: a hung
//! network mount is skipped (and stays skipped until its call returns) instead of stalling the
//! agent.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::family::Family;

/// Filesystem types that hold no user data (node_exporter's default exclusions).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    // A container's root: it shows the filesystem under it again, once per container, and
    // comes and goes with them (a disk alert per pod on a Kubernetes node).
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
    "fuse.lxcfs",
    "fuse.portal",
    "ramfs",
    "efivarfs",
];

fn skip_mountpoint(m: &str) -> bool {
    [
        "/dev",
        "/proc",
        "/sys",
        "/run/credentials/",
        "/var/lib/docker/",
        "/var/lib/containers/storage/",
        "/var/lib/kubelet/",
    ]
    .iter()
    .any(|p| {
        m == p.trim_end_matches('/') || m.starts_with(&format!("{}/", p.trim_end_matches('/')))
    })
}

pub(crate) struct FsSampler {
    timeout: Duration,
    /// Mount points whose statfs has not returned yet.
    stuck: Arc<Mutex<HashSet<String>>>,
}

struct Stat {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

impl FsSampler {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            stuck: Arc::default(),
        }
    }

    pub(crate) fn sample(&self, mounts: &str) -> Vec<Family> {
        let mut fams = [
            Family::gauge("node_filesystem_size_bytes", "Filesystem size in bytes."),
            Family::gauge(
                "node_filesystem_free_bytes",
                "Filesystem free space in bytes.",
            ),
            Family::gauge(
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
            ),
            Family::gauge("node_filesystem_files", "Filesystem total file nodes."),
            Family::gauge(
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
            ),
            Family::gauge("node_filesystem_readonly", "Filesystem read-only status."),
            Family::gauge(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
            ),
        ];
        // A mount point mounted over again shows the last mount: keep each one's last line.
        let mut order: Vec<String> = Vec::new();
        let mut last: HashMap<String, (&str, &str, bool)> = HashMap::new();
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let (dev, mp, fstype) = (f[0], unescape(f[1]), f[2]);
            if PSEUDO_FS.contains(&fstype) || skip_mountpoint(&mp) {
                continue;
            }
            // Read-only as the mount table says, not as statfs says from the agent's own mount
            // namespace, where a sandbox (systemd's ProtectSystem=strict) mounts everything
            // read-only for the agent alone.
            let readonly = f[3].split(',').any(|o| o == "ro");
            if last.insert(mp.clone(), (dev, fstype, readonly)).is_none() {
                order.push(mp);
            }
        }
        for mp in order {
            let (dev, fstype, readonly) = last[&mp];
            let labels = [
                ("device", dev),
                ("mountpoint", mp.as_str()),
                ("fstype", fstype),
            ];
            match self.statfs(&mp) {
                Some(s) => {
                    let vals = [
                        s.size,
                        s.free,
                        s.avail,
                        s.files,
                        s.files_free,
                        f64::from(u8::from(readonly)),
                        0.0,
                    ];
                    for (fam, v) in fams.iter_mut().zip(vals) {
                        fam.push(labels, v);
                    }
                }
                None => fams[6].push(labels, 1.0),
            }
        }
        fams.into_iter().collect()
    }

    fn statfs(&self, mp: &str) -> Option<Stat> {
        {
            let stuck = self.stuck.lock().unwrap_or_else(|p| p.into_inner());
            if stuck.contains(mp) {
                return None;
            }
        }
        let (tx, rx) = mpsc::channel();
        let path = mp.to_string();
        let stuck = Arc::clone(&self.stuck);
        let spawned = std::thread::Builder::new()
            .name("statfs".into())
            .spawn(move || {
                let r = rustix::fs::statvfs(path.as_str());
                if tx.send(r).is_err() {
                    // The caller gave up on us: the mount is usable again now.
                    stuck
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&path);
                }
            });
        if spawned.is_err() {
            return None;
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(s)) => {
                let frag = s.f_frsize as f64;
                Some(Stat {
                    size: s.f_blocks as f64 * frag,
                    free: s.f_bfree as f64 * frag,
                    avail: s.f_bavail as f64 * frag,
                    files: s.f_files as f64,
                    files_free: s.f_ffree as f64,
                })
            }
            Ok(Err(_)) => None,
            Err(_) => {
                tracing::warn!(
                    mountpoint = mp,
                    "statfs timed out; skipping this mount until it answers"
                );
                self.stuck
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(mp.to_string());
                None
            }
        }
    }
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && b[i + 1..].len() >= 3 {
            if let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(n as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_mounts_filtered() {
        let s = FsSampler::new(Duration::from_secs(2));
        let f = s.sample("proc /proc proc rw 0 0\n/dev/x / ext4 rw 0 0\n/dev/x / ext4 rw 0 0\nnone /sys/fs/cgroup cgroup2 rw 0 0\noverlay /run/containerd/io.containerd.runtime.v2.task/k8s.io/ab12/rootfs overlay rw 0 0\n");
        assert_eq!(f[0].samples.len(), 1);
        assert_eq!(f[0].samples[0].0.get("mountpoint"), Some("/"));
        assert!(f[0].samples[0].1 > 0.0);
    }

    /// The read-only flag is the mount table's; a mount point mounted twice is its last mount.
    #[test]
    fn read_only_as_the_mount_table_says() {
        let s = FsSampler::new(Duration::from_secs(2));
        let f = s.sample("/dev/x / ext4 rw,relatime 0 0\n/dev/y / ext4 ro,relatime 0 0\n");
        let ro = &f[5];
        assert_eq!(ro.samples.len(), 1);
        assert_eq!(ro.samples[0].0.get("device"), Some("/dev/y"));
        assert_eq!(ro.samples[0].1, 1.0);
        let f = s.sample("/dev/x / ext4 rw,errors=remount-ro 0 0\n");
        assert_eq!(f[5].samples[0].1, 0.0, "remount-ro is not ro");
    }

    #[test]
    fn unescapes() {
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
