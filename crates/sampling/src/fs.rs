//! Filesystem space and inodes. `statfs` runs on a worker thread with a deadline: a hung
//! network mount is skipped (and stays skipped until its call returns) instead of stalling the
//! agent. The worker lives across cycles (a thread per call cost more than the calls); one stuck
//! in a hung call is left to it, and the next call gets a new worker.

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

/// A lock, whatever a panic left in it (sets of mount points and a queue: nothing half-made).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `statfs` is asked: a mount point, and where to answer.
type Call = (String, mpsc::Sender<Result<Stat, ()>>);

/// The call itself (the real `statvfs`, or a test's).
type StatFn = Arc<dyn Fn(&str) -> Result<Stat, ()> + Send + Sync>;

pub(crate) struct FsSampler {
    timeout: Duration,
    /// Mount points whose statfs has not returned yet.
    stuck: Arc<Mutex<HashSet<String>>>,
    /// The worker's queue; `None` until the first call and after a worker got stuck.
    worker: Mutex<Option<mpsc::Sender<Call>>>,
    call: StatFn,
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

impl FsSampler {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self::with_call(
            timeout,
            Arc::new(|mp: &str| {
                let s = rustix::fs::statvfs(mp).map_err(|_| ())?;
                let frag = s.f_frsize as f64;
                Ok(Stat {
                    size: s.f_blocks as f64 * frag,
                    free: s.f_bfree as f64 * frag,
                    avail: s.f_bavail as f64 * frag,
                    files: s.f_files as f64,
                    files_free: s.f_ffree as f64,
                })
            }),
        )
    }

    fn with_call(timeout: Duration, call: StatFn) -> Self {
        Self {
            timeout,
            stuck: Arc::default(),
            worker: Mutex::new(None),
            call,
        }
    }

    /// The worker's queue, starting a worker if there is none.
    fn worker(&self) -> Option<mpsc::Sender<Call>> {
        let mut w = lock(&self.worker);
        if w.is_none() {
            let (tx, rx) = mpsc::channel::<Call>();
            let (stuck, call) = (Arc::clone(&self.stuck), Arc::clone(&self.call));
            std::thread::Builder::new()
                .name("statfs".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    // Ends when the sampler drops its queue (a stuck worker's was dropped).
                    for (path, reply) in rx {
                        let r = call(&path);
                        let _ = reply.send(r);
                        // Answered: if the caller gave up waiting, the mount is usable again.
                        lock(&stuck).remove(&path);
                    }
                })
                .ok()?;
            *w = Some(tx);
        }
        w.clone()
    }

    /// Lets the current worker go (stuck or gone): its queue closes, and it ends once free.
    fn drop_worker(&self) {
        *lock(&self.worker) = None;
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
        if lock(&self.stuck).contains(mp) {
            return None;
        }
        // A worker found gone (a call that panicked) is replaced once.
        let mut asked = None;
        for _ in 0..2 {
            let w = self.worker()?;
            let (tx, rx) = mpsc::channel();
            if w.send((mp.to_string(), tx)).is_ok() {
                asked = Some(rx);
                break;
            }
            self.drop_worker();
        }
        let rx = asked?;
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r.ok(),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.stuck).insert(mp.to_string());
                // Answered just now, before it was marked: not stuck after all.
                if let Ok(r) = rx.try_recv() {
                    lock(&self.stuck).remove(mp);
                    return r.ok();
                }
                tracing::warn!(
                    mountpoint = mp,
                    "statfs timed out; skipping this mount until it answers"
                );
                // The worker is stuck in the call: leave it to it, and the next call gets a new
                // one. Its answer, when it comes, frees the mount (it unmarks it after answering).
                self.drop_worker();
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

    /// A mount whose statfs hangs is reported as an error after the deadline, skipped without
    /// a call while it hangs, and sampled again once its call returns; the other mounts are
    /// sampled all along, by one worker while none hangs (no thread per call).
    #[test]
    fn a_hung_mount_is_skipped_until_it_answers_and_the_others_go_on() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let hung_calls = Arc::new(AtomicUsize::new(0));
        let s = {
            let (gate, threads, hung_calls) = (
                Arc::clone(&gate),
                Arc::clone(&threads),
                Arc::clone(&hung_calls),
            );
            FsSampler::with_call(
                Duration::from_millis(200),
                Arc::new(move |mp: &str| {
                    threads.lock().unwrap().insert(std::thread::current().id());
                    if mp == "/mnt/nfs" {
                        hung_calls.fetch_add(1, Ordering::SeqCst);
                        let (open, cv) = &*gate;
                        let mut o = open.lock().unwrap();
                        while !*o {
                            o = cv.wait(o).unwrap();
                        }
                    }
                    Ok(Stat {
                        size: 100.0,
                        free: 50.0,
                        avail: 40.0,
                        files: 10.0,
                        files_free: 5.0,
                    })
                }),
            )
        };
        let mounts = "/dev/a / ext4 rw 0 0\nsrv:/x /mnt/nfs nfs4 rw 0 0\n/dev/b /var ext4 rw 0 0\n";
        let errors = |f: &[Family]| -> Vec<(String, f64)> {
            f[6].samples
                .iter()
                .map(|(l, v)| (l.get("mountpoint").unwrap().to_string(), *v))
                .collect()
        };
        let sized = |f: &[Family]| -> Vec<String> {
            f[0].samples
                .iter()
                .map(|(l, _)| l.get("mountpoint").unwrap().to_string())
                .collect()
        };
        // Two cycles with no mount hanging: one worker serves every call.
        let f = s.sample("/dev/a / ext4 rw 0 0\n/dev/b /var ext4 rw 0 0\n");
        assert_eq!(sized(&f), ["/", "/var"]);
        let f = s.sample("/dev/a / ext4 rw 0 0\n/dev/b /var ext4 rw 0 0\n");
        assert_eq!(sized(&f), ["/", "/var"]);
        assert_eq!(
            threads.lock().unwrap().len(),
            1,
            "one worker for every call"
        );
        let t = std::time::Instant::now();
        let f = s.sample(mounts);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(sized(&f), ["/", "/var"], "the mount after the hung one too");
        assert!(errors(&f).contains(&("/mnt/nfs".into(), 1.0)));
        // Still hung: skipped without another call, the others still sampled.
        let f = s.sample(mounts);
        assert_eq!(sized(&f), ["/", "/var"]);
        assert_eq!(
            hung_calls.load(Ordering::SeqCst),
            1,
            "not called again while hung"
        );
        // It answers: sampled again from the next cycle on.
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.stuck.lock().unwrap().contains("/mnt/nfs") {
            assert!(std::time::Instant::now() < deadline, "never unmarked");
            std::thread::sleep(Duration::from_millis(5));
        }
        let f = s.sample(mounts);
        assert_eq!(sized(&f), ["/", "/mnt/nfs", "/var"]);
        assert!(
            errors(&f).iter().all(|(_, v)| *v == 0.0),
            "{:?}",
            errors(&f)
        );
        assert_eq!(hung_calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn unescapes() {
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
