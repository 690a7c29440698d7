use super::*;
use proptest::prelude::*;

fn opts() -> Options {
    Options {
        max_bytes: 1 << 30,
        max_age_ms: i64::MAX / 4,
        segment_bytes: 1 << 20,
    }
}

fn body(i: u32) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 7) as usize)).into_bytes()
}

/// Appends `body(i)` for each i in `range`, created at 0 ms, each of `samples` samples.
fn fill(s: &mut Spool, range: std::ops::Range<u32>, samples: u32) {
    for i in range {
        s.append(0, samples, &body(i)).unwrap();
    }
}

fn drain(s: &mut Spool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(r) = s.next(0).unwrap() {
        out.push(r.body);
    }
    out
}

#[test]
fn records_come_back_in_order_once_committed_never_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    for i in 0..100 {
        s.append(0, i, &body(i)).unwrap();
    }
    assert_eq!(s.pending_records(), 100);
    assert_eq!(s.pending_samples(), (0..100).sum::<u32>() as u64);
    let got = drain(&mut s);
    assert_eq!(got, (0..100).map(body).collect::<Vec<_>>());
    s.commit().unwrap();
    assert_eq!(s.pending_records(), 0);
    assert_eq!(s.pending_samples(), 0);
    drop(s);
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert!(s.next(0).unwrap().is_none());
    s.append(0, 1, b"after").unwrap();
    assert_eq!(s.next(0).unwrap().unwrap().body, b"after");
}

#[test]
fn what_was_read_but_not_committed_is_read_again_after_a_crash_or_rewind() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    fill(&mut s, 0..10, 1);
    for _ in 0..4 {
        s.next(0).unwrap().unwrap();
    }
    s.commit().unwrap();
    s.next(0).unwrap().unwrap();
    s.rewind();
    assert_eq!(s.next(0).unwrap().unwrap().body, body(4));
    s.next(0).unwrap();
    // Killed here: the two reads after the commit were not acknowledged.
    drop(s);
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(s.pending_records(), 6);
    assert_eq!(drain(&mut s), (4..10).map(body).collect::<Vec<_>>());
}

#[test]
fn segments_rotate_and_go_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        segment_bytes: 1000,
        ..opts()
    };
    let mut s = Spool::open(dir.path(), o).unwrap();
    fill(&mut s, 0..200, 2);
    assert!(s.segments() > 5, "{} segments", s.segments());
    for _ in 0..150 {
        s.next(0).unwrap().unwrap();
    }
    s.commit().unwrap();
    assert_eq!(s.pending_records(), 50);
    assert_eq!(s.pending_samples(), 100);
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
        .count();
    assert_eq!(files, s.segments());
    // 200 records take ~6.6 kB; what is left is the 50 pending plus part of one segment.
    assert!(
        s.bytes() < 3000,
        "acknowledged segments deleted: {}",
        s.bytes()
    );
    drop(s);
    let mut s = Spool::open(dir.path(), o).unwrap();
    assert_eq!(s.pending_records(), 50);
    assert_eq!(drain(&mut s), (150..200).map(body).collect::<Vec<_>>());
}

#[test]
fn a_full_spool_drops_its_oldest_segment_and_counts_the_samples() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        max_bytes: 4000,
        segment_bytes: 1000,
        ..opts()
    };
    let mut s = Spool::open(dir.path(), o).unwrap();
    let mut dropped = 0;
    for i in 0..400 {
        dropped += s.append(0, 3, &body(i)).unwrap();
    }
    assert!(s.bytes() <= 4000 + 100, "bounded: {}", s.bytes());
    assert!(dropped > 0);
    assert_eq!(s.losses().full_samples, dropped);
    // Kept plus dropped is everything appended, and what is kept is the newest.
    assert_eq!(s.pending_samples() + dropped, 400 * 3);
    let got = drain(&mut s);
    assert_eq!(got.last().unwrap(), &body(399));
    let first = String::from_utf8(got[0].clone()).unwrap();
    let n: u32 = first.split('-').nth(1).unwrap().parse().unwrap();
    assert_eq!(got, (n..400).map(body).collect::<Vec<_>>());
}

#[test]
fn dropping_while_a_send_is_in_flight_rereads_from_the_new_front() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        max_bytes: 3000,
        segment_bytes: 1000,
        ..opts()
    };
    let mut s = Spool::open(dir.path(), o).unwrap();
    fill(&mut s, 0..60, 1);
    let first = s.next(0).unwrap().unwrap().body;
    fill(&mut s, 60..200, 1);
    s.commit().unwrap();
    let next = s.next(0).unwrap().unwrap().body;
    assert_ne!(first, next);
    assert_eq!(
        s.pending_samples() + s.losses().full_samples,
        200,
        "nothing counted twice or missed"
    );
}

#[test]
fn a_torn_last_write_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    fill(&mut s, 0..5, 1);
    drop(s);
    let seg = dir.path().join(seg_name(1));
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    let half = frame(0, 1, b"half a record");
    f.write_all(&half[..half.len() / 2]).unwrap();
    drop(f);
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(s.losses().torn_bytes, (half.len() / 2) as u64);
    s.append(0, 1, b"next").unwrap();
    let mut want: Vec<Vec<u8>> = (0..5).map(body).collect();
    want.push(b"next".to_vec());
    assert_eq!(drain(&mut s), want);
}

#[test]
fn a_corrupt_sealed_segment_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        segment_bytes: 200,
        ..opts()
    };
    let mut s = Spool::open(dir.path(), o).unwrap();
    fill(&mut s, 0..40, 1);
    let segs = s.segments();
    assert!(segs >= 3);
    drop(s);
    // Flip a byte in the middle of the second segment.
    let p = dir.path().join(seg_name(2));
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let mut s = Spool::open(dir.path(), o).unwrap();
    assert_eq!(s.losses().corrupt_records, 1);
    let got = drain(&mut s);
    assert!(got.len() < 40 && got.len() > 30, "{} records", got.len());
    assert_eq!(got.last().unwrap(), &body(39));
    assert_eq!(got[0], body(0));
    // Damage found only while reading is counted too.
    let p = dir.path().join(seg_name(3));
    let mut data = std::fs::read(&p).unwrap();
    data[HEADER + 2] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    s.rewind();
    let again = drain(&mut s);
    assert!(again.len() < got.len());
    assert_eq!(s.losses().corrupt_records, 2);
}

#[test]
fn expired_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        max_age_ms: 1000,
        ..opts()
    };
    let mut s = Spool::open(dir.path(), o).unwrap();
    for i in 0..10 {
        s.append(i64::from(i) * 500, 2, &body(i)).unwrap();
    }
    // At 5000 ms, records created before 4000 ms are too old.
    let mut got = Vec::new();
    while let Some(r) = s.next(5000).unwrap() {
        got.push(r.body);
    }
    assert_eq!(got, (8..10).map(body).collect::<Vec<_>>());
    assert_eq!(s.losses().expired_samples, 16);
    s.commit().unwrap();
    assert_eq!(s.pending_records(), 0);
}

#[test]
fn a_damaged_cursor_file_never_skips_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    fill(&mut s, 0..10, 1);
    for _ in 0..3 {
        s.next(0).unwrap();
    }
    s.commit().unwrap();
    drop(s);
    let text = std::fs::read_to_string(dir.path().join(CURSOR_FILE)).unwrap();
    let off: u64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    std::fs::write(dir.path().join(CURSOR_FILE), format!("1 {}\n", off + 5)).unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(drain(&mut s), (3..10).map(body).collect::<Vec<_>>());
    drop(s);
    std::fs::write(dir.path().join(CURSOR_FILE), "garbage").unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(drain(&mut s).len(), 10, "no cursor: from the start");
}

#[test]
fn the_cursor_is_written_in_place_and_a_torn_one_is_not_trusted() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CURSOR_FILE);
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    fill(&mut s, 0..10, 1);
    s.next(0).unwrap();
    s.commit().unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    for _ in 0..3 {
        s.next(0).unwrap();
        s.commit().unwrap();
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        inode,
        "no new file per commit"
    );
    drop(s);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 51, "{text:?}");
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(drain(&mut s), (4..10).map(body).collect::<Vec<_>>());
    drop(s);
    // A write torn by a power loss: a digit of the new cursor over the old one.
    let digit = if &text[30..31] == "9" { "8" } else { "9" };
    let torn = format!("{}{digit}{}", &text[..30], &text[31..]);
    std::fs::write(&path, torn).unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(drain(&mut s).len(), 10, "not trusted: from the start");
    drop(s);
    // Written before the checksum, by a rename: still read.
    let old_format = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&path, format!("{old_format}\n")).unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(drain(&mut s), (4..10).map(body).collect::<Vec<_>>());
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Spool::open(dir.path(), opts()).unwrap();
    let e = Spool::open(dir.path(), opts()).err().expect("locked");
    assert!(e.to_string().contains("in use"), "{e}");
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Next,
    Commit,
    Rewind,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Append),
        4 => Just(Op::Next),
        2 => Just(Op::Commit),
        1 => Just(Op::Rewind),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Against a model: acknowledged records never come back, every other record comes back in
    /// order, across rotations, rewinds and restarts.
    #[test]
    fn behaves_as_a_durable_queue(ops in proptest::collection::vec(op(), 1..200)) {
        let dir = tempfile::tempdir().unwrap();
        let o = Options { segment_bytes: 120, ..opts() };
        let mut s = Spool::open(dir.path(), o).unwrap();
        let mut all: Vec<Vec<u8>> = Vec::new();
        let mut acked = 0usize;
        let mut read = 0usize;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let b = vec![n; (n % 50) as usize];
                    s.append(0, 1, &b).unwrap();
                    all.push(b);
                }
                Op::Next => {
                    let got = s.next(0).unwrap().map(|r| r.body);
                    prop_assert_eq!(got.as_ref(), all.get(read));
                    if got.is_some() { read += 1; }
                }
                Op::Commit => { s.commit().unwrap(); acked = read; }
                Op::Rewind => { s.rewind(); read = acked; }
                Op::Reopen => {
                    drop(s);
                    s = Spool::open(dir.path(), o).unwrap();
                    read = acked;
                }
            }
            prop_assert_eq!(s.pending_records() as usize, all.len() - acked);
        }
    }
}
