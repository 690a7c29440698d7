use super::*;
use tocsin_model::METRIC_NAME;

fn s(name: &str, host: &str, pts: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, name), ("host", host)]),
        samples: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

const NOW: i64 = 1_700_000_000_000;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("t.db"), StoreOptions::default()).unwrap()
}

fn all(store: &Store, name: &str) -> Vec<Sample> {
    let sel = store.select(|l| l.metric_name() == Some(name));
    assert_eq!(sel.len(), 1);
    store.query(sel[0].0, i64::MIN, i64::MAX).unwrap()
}

#[test]
fn append_dedups_and_survives_reopen_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut b = vec![s("up", "a", &[(NOW, 1.0), (NOW + 10, 2.0)])];
    let mut tx = store.begin().unwrap();
    let (_, st) = tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    assert_eq!(st.accepted, 2);
    assert_eq!(st.new_series, 1);

    // A retry of the same batch is entirely dropped, plus one new sample accepted.
    let mut b = vec![s(
        "up",
        "a",
        &[(NOW, 1.0), (NOW + 10, 2.0), (NOW + 20, 3.0)],
    )];
    let mut tx = store.begin().unwrap();
    let (_, st) = tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    assert_eq!((st.accepted, st.out_of_order), (1, 2));
    assert_eq!(b[0].samples.len(), 1);
    drop(store);

    // Reopen: head rebuilt from the log.
    let mut store = open(&dir);
    assert_eq!(all(&store, "up").len(), 3);
    let cs = store.checkpoint(0).unwrap();
    assert_eq!(
        (cs.chunks_written, cs.samples_written, cs.log_rows_removed),
        (1, 3, 2)
    );
    drop(store);

    // Reopen after checkpoint: data in chunks, and dedup still knows the last timestamp.
    let mut store = open(&dir);
    assert_eq!(
        all(&store, "up")
            .iter()
            .map(|x| x.value)
            .collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0]
    );
    let mut b = vec![s("up", "a", &[(NOW + 20, 3.0), (NOW + 30, 4.0)])];
    let mut tx = store.begin().unwrap();
    let (_, st) = tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    assert_eq!((st.accepted, st.out_of_order), (1, 1));
    assert_eq!(all(&store, "up").len(), 4);
    assert_eq!(store.hosts().unwrap(), vec![("a".to_string(), NOW)]);
}

#[test]
fn rollback_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    {
        let mut tx = store.begin().unwrap();
        let mut b = vec![s("up", "a", &[(NOW, 1.0)])];
        tx.append(&mut b, NOW).unwrap();
        tx.put_alert_state("k", Some("{}")).unwrap();
        // dropped without commit
    }
    assert_eq!(store.series_count(), 0);
    assert!(store.alert_states().unwrap().is_empty());
    let mut tx = store.begin().unwrap();
    let mut b = vec![s("up", "a", &[(NOW, 1.0)])];
    let (_, st) = tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    assert_eq!(st.accepted, 1);
    assert_eq!(all(&store, "up").len(), 1);
}

#[test]
fn future_and_unordered_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tx = store.begin().unwrap();
    let mut b = vec![s(
        "up",
        "a",
        &[(NOW + 10, 1.0), (NOW + 5, 1.0), (NOW + 3_600_000, 1.0)],
    )];
    let (_, st) = tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        (st.accepted, st.out_of_order, st.too_far_in_future),
        (1, 1, 1)
    );
}

#[test]
fn a_host_whose_samples_are_all_out_of_order_is_still_seen() {
    // Its clock ran 300 s ahead, then came back: correctly dated samples are older than what
    // the series holds. They are dropped, but they arrived.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tx = store.begin().unwrap();
    tx.append(&mut [s("up", "a", &[(NOW + 300_000, 1.0)])], NOW)
        .unwrap();
    tx.commit().unwrap();
    let later = NOW + 60_000;
    let mut tx = store.begin().unwrap();
    let (_, st) = tx
        .append(&mut [s("up", "a", &[(later, 1.0)])], later)
        .unwrap();
    assert_eq!((st.accepted, st.out_of_order), (0, 1));
    let seen: Vec<(String, i64)> = tx.hosts_seen().map(|(h, t)| (h.to_string(), t)).collect();
    assert_eq!(seen, vec![("a".to_string(), later)]);
}

#[test]
fn retention_expires_old_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tx = store.begin().unwrap();
    tx.append(&mut [s("up", "a", &[(1000, 1.0), (2000, 1.0)])], NOW)
        .unwrap();
    tx.commit().unwrap();
    store.checkpoint(0).unwrap();
    let cs = store.checkpoint(5000).unwrap();
    assert_eq!(cs.chunks_expired, 1);
    assert!(all(&store, "up").is_empty());
}

#[test]
fn outbox_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tx = store.begin().unwrap();
    tx.enqueue("hook", "{\"a\":1}", NOW).unwrap();
    tx.enqueue("other", "{}", NOW).unwrap();
    tx.commit().unwrap();
    let ob = Outbox::open(store.path(), true).unwrap();
    let due = ob.pending("hook", 10).unwrap();
    assert_eq!(due.len(), 1);
    ob.mark_failed(due[0].id, "refused", Some(NOW + 1000))
        .unwrap();
    let due = ob.pending("hook", 10).unwrap();
    assert_eq!((due[0].attempts, due[0].next_attempt_ms), (1, NOW + 1000));
    ob.mark_delivered(due[0].id).unwrap();
    assert_eq!(ob.count("hook", OutboxStatus::Delivered).unwrap(), 1);
    assert_eq!(ob.count("other", OutboxStatus::Pending).unwrap(), 1);
    assert!(ob.pending("hook", 10).unwrap().is_empty());
}

#[test]
fn baselines_replace_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store
        .save_baselines(&[("a/1".into(), vec![1, 0, 2]), ("b/2".into(), vec![3])])
        .unwrap();
    store.save_baselines(&[("a/1".into(), vec![1, 9])]).unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.baselines().unwrap(),
        vec![("a/1".to_string(), vec![1, 9])]
    );
}

#[test]
fn error_budgets_replace_and_reload_apart_from_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.save_baselines(&[("a/1".into(), vec![7])]).unwrap();
    store
        .save_error_budgets(&[
            ("web/availability".into(), vec![1, 2]),
            ("db/latency".into(), vec![3]),
        ])
        .unwrap();
    store
        .save_error_budgets(&[("web/availability".into(), vec![4])])
        .unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.error_budgets().unwrap(),
        vec![("web/availability".to_string(), vec![4])]
    );
    assert_eq!(
        store.baselines().unwrap(),
        vec![("a/1".to_string(), vec![7])]
    );
}

#[test]
fn baselines_saved_as_json_text_by_earlier_versions_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .conn
        .execute(
            "INSERT INTO baselines (key, data) VALUES ('a/1', '{\"n\":1}')",
            [],
        )
        .unwrap();
    assert_eq!(
        store.baselines().unwrap(),
        vec![("a/1".to_string(), b"{\"n\":1}".to_vec())]
    );
}

#[test]
fn version_1_databases_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE, metric TEXT NOT NULL, host TEXT);
            CREATE TABLE chunks (series_id INTEGER NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL, count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (series_id, start_ms)) WITHOUT ROWID;
            CREATE TABLE wal (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
            CREATE TABLE alert_state (key TEXT PRIMARY KEY, data TEXT NOT NULL);
            CREATE TABLE outbox (id INTEGER PRIMARY KEY, receiver TEXT NOT NULL, created_ms INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'pending', last_error TEXT, payload TEXT NOT NULL);
            CREATE TABLE hosts (host TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL);
            PRAGMA user_version = 1;").unwrap();
    }
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    store.save_baselines(&[("k".into(), vec![1])]).unwrap();
}

#[test]
fn series_per_host_are_limited_for_ingest_not_for_derived_series() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_series_per_host: 2,
        ..StoreOptions::default()
    };
    let mut store = Store::open(&dir.path().join("t.db"), opts).unwrap();
    let mut tx = store.begin().unwrap();
    let mut b = vec![
        s("a", "h1", &[(NOW, 1.0)]),
        s("b", "h1", &[(NOW, 1.0)]),
        s("c", "h1", &[(NOW, 1.0), (NOW + 1, 2.0)]),
        s("a", "h2", &[(NOW, 1.0)]),
    ];
    let (_, st) = tx.append(&mut b, NOW).unwrap();
    assert_eq!((st.accepted, st.refused_series, st.over_limit), (3, 1, 2));
    tx.commit().unwrap();
    // Known series still take samples; derived ones are not limited.
    let mut tx = store.begin().unwrap();
    let (_, st) = tx
        .append(
            &mut [
                s("a", "h1", &[(NOW + 5, 1.0)]),
                s("d", "h1", &[(NOW + 5, 1.0)]),
            ],
            NOW,
        )
        .unwrap();
    assert_eq!((st.accepted, st.refused_series), (1, 1));
    let st = tx
        .append_derived(&mut [s("tocsin_host_up", "h1", &[(NOW + 5, 1.0)])], NOW)
        .unwrap();
    assert_eq!((st.accepted, st.refused_series), (1, 0));
    tx.commit().unwrap();
    drop(store);
    // The count survives a reopen.
    let mut store = Store::open(&dir.path().join("t.db"), opts).unwrap();
    let mut tx = store.begin().unwrap();
    let (_, st) = tx
        .append(&mut [s("e", "h1", &[(NOW + 9, 1.0)])], NOW)
        .unwrap();
    assert_eq!(st.refused_series, 1);
}

#[test]
fn series_without_a_host_and_invented_hosts_are_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_series_per_host: 2,
        max_hosts: 3,
        ..StoreOptions::default()
    };
    let hostless = |name: &str| SeriesSamples {
        labels: tocsin_model::Labels::from_pairs([("__name__", name)]),
        samples: vec![Sample::new(NOW, 1.0)],
    };
    let mut store = Store::open(&dir.path().join("t.db"), opts).unwrap();
    let mut tx = store.begin().unwrap();
    let (_, st) = tx
        .append(&mut [hostless("a"), hostless("b"), hostless("c")], NOW)
        .unwrap();
    assert_eq!(
        (st.accepted, st.refused_series),
        (2, 1),
        "host-less: one host's limit"
    );
    // "" counts as one host: two more, then a fourth host is refused, in this transaction
    // and after a reopen.
    let (_, st) = tx
        .append(
            &mut [
                s("m", "h1", &[(NOW, 1.0)]),
                s("m", "h2", &[(NOW, 1.0)]),
                s("m", "h3", &[(NOW, 1.0)]),
                s("n", "h1", &[(NOW, 1.0)]),
            ],
            NOW,
        )
        .unwrap();
    assert_eq!((st.accepted, st.refused_series), (3, 1));
    tx.commit().unwrap();
    drop(store);
    let mut store = Store::open(&dir.path().join("t.db"), opts).unwrap();
    let mut tx = store.begin().unwrap();
    let (_, st) = tx
        .append(
            &mut [
                s("m", "h4", &[(NOW + 1, 1.0)]),
                s("o", "h2", &[(NOW + 1, 1.0)]),
            ],
            NOW,
        )
        .unwrap();
    assert_eq!((st.accepted, st.refused_series), (1, 1));
}

#[test]
fn latest_holds_the_newest_sample_of_series_fresh_enough() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut b = vec![
        s("load", "a", &[(NOW, 1.0), (NOW + 10, 2.0)]),
        s("load", "b", &[(NOW - 600_000, 7.0)]),
    ];
    let mut tx = store.begin().unwrap();
    tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    // A retry of an older sample does not replace the newest.
    let mut b = vec![s("load", "a", &[(NOW + 5, 9.0)])];
    let mut tx = store.begin().unwrap();
    tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
    store.checkpoint(0).unwrap();
    let got: Vec<(String, Sample)> = store
        .latest(NOW - 60_000)
        .into_iter()
        .map(|(l, s)| (l.get("host").unwrap().to_string(), s))
        .collect();
    assert_eq!(got, vec![("a".to_string(), Sample::new(NOW + 10, 2.0))]);
    assert_eq!(store.latest(i64::MIN).len(), 2);
}

fn read(r: &mut Reader, name: &str) -> Vec<(String, Vec<f64>)> {
    let mut got: Vec<(String, Vec<f64>)> = r
        .select(Some(name), |_| true, i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|(l, s)| {
            (
                l.get("host").unwrap().to_string(),
                s.iter().map(|x| x.value).collect(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

fn commit(store: &mut Store, b: Vec<SeriesSamples>) {
    let mut b = b;
    let mut tx = store.begin().unwrap();
    tx.append(&mut b, NOW).unwrap();
    tx.commit().unwrap();
}

#[test]
fn readers_see_committed_samples_across_checkpoints_without_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let cache = ReadCache::default();
    let mut r1 = Reader::open(store.path(), cache.clone()).unwrap();
    let mut r2 = Reader::open(store.path(), cache.clone()).unwrap();
    commit(
        &mut store,
        vec![s("up", "a", &[(NOW, 1.0)]), s("up", "b", &[(NOW, 5.0)])],
    );
    assert_eq!(
        read(&mut r1, "up"),
        vec![("a".into(), vec![1.0]), ("b".into(), vec![5.0])]
    );
    // The log grows: the shared copy takes only the new rows, for either reader.
    commit(&mut store, vec![s("up", "a", &[(NOW + 10, 2.0)])]);
    assert_eq!(read(&mut r2, "up")[0], ("a".into(), vec![1.0, 2.0]));
    // A checkpoint moves the log into chunks: no sample lost or doubled.
    store.checkpoint(0).unwrap();
    assert_eq!(read(&mut r1, "up")[0], ("a".into(), vec![1.0, 2.0]));
    commit(&mut store, vec![s("up", "a", &[(NOW + 20, 3.0)])]);
    store.checkpoint(0).unwrap();
    commit(&mut store, vec![s("up", "a", &[(NOW + 30, 4.0)])]);
    assert_eq!(
        read(&mut r2, "up")[0],
        ("a".into(), vec![1.0, 2.0, 3.0, 4.0])
    );
    assert_eq!(read(&mut r1, "up")[1], ("b".into(), vec![5.0]));
    // A window, and a name nothing has.
    let w = r1
        .select(
            Some("up"),
            |l| l.get("host") == Some("a"),
            NOW + 10,
            NOW + 20,
        )
        .unwrap();
    assert_eq!(w[0].1.len(), 2);
    assert!(read(&mut r1, "down").is_empty());
    // Series listing reads the index only.
    assert_eq!(r1.series(None, |_| true).unwrap().len(), 2);
}

#[test]
fn a_long_head_is_stored_in_chunks_of_bounded_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let pts: Vec<(i64, f64)> = (0..1000)
        .map(|i| (NOW - (1000 - i) * 10_000, i as f64))
        .collect();
    commit(&mut store, vec![s("up", "a", &pts)]);
    let cs = store.checkpoint(0).unwrap();
    assert_eq!((cs.chunks_written, cs.samples_written), (9, 1000));
    let got = all(&store, "up");
    assert_eq!(got.len(), 1000);
    assert!(got
        .windows(2)
        .all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
    // A window reads only what overlaps it.
    let sel = store.select(|l| l.metric_name() == Some("up"));
    assert_eq!(
        store
            .query(sel[0].0, NOW - 500_000, NOW - 400_000)
            .unwrap()
            .len(),
        11
    );
}

#[test]
fn noisy_values_are_stored_in_chunks_that_fit_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    // Values whose every bit changes: about nine bytes a sample.
    let pts: Vec<(i64, f64)> = (0..500)
        .map(|i| {
            (
                NOW - (500 - i) * 10_000,
                f64::from_bits(
                    0x3ff0_0000_0000_0000 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 12,
                ),
            )
        })
        .collect();
    commit(&mut store, vec![s("noisy", "a", &pts)]);
    let cs = store.checkpoint(0).unwrap();
    assert!(cs.chunks_written > 5, "{cs:?}");
    let got = all(&store, "noisy");
    assert_eq!(got.len(), 500);
    assert!(got
        .iter()
        .zip(&pts)
        .all(|(g, p)| g.value.to_bits() == p.1.to_bits()));
    let max: i64 = store
        .conn
        .query_row("SELECT max(length(data)) FROM chunks", [], |r| r.get(0))
        .unwrap();
    assert!(max as usize <= MAX_CHUNK_BYTES, "{max}");
}

#[test]
fn derived_series_never_take_a_senders_quota_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_series_per_host: 1,
        ..StoreOptions::default()
    };
    for round in 0..2 {
        let mut store = Store::open(&dir.path().join("t.db"), opts).unwrap();
        // The collector's own host-less series, and one it derives for host a.
        let mut own = vec![
            s(&format!("tocsin_own_{round}"), "", &[(NOW + round, 1.0)]),
            s("tocsin_host_up", "a", &[(NOW + round, 1.0)]),
        ];
        own[0].labels.remove("host");
        let mut tx = store.begin().unwrap();
        let st = tx.append_derived(&mut own, NOW).unwrap();
        tx.commit().unwrap();
        assert_eq!(st.refused_series, 0);
        // The senders' quota is whole: one series for host a, one host-less.
        let mut b = vec![
            s("m", "a", &[(NOW + round, 1.0)]),
            s("m2", "a", &[(NOW + round, 1.0)]),
        ];
        let mut tx = store.begin().unwrap();
        let (_, st) = tx.append(&mut b, NOW).unwrap();
        tx.commit().unwrap();
        assert_eq!((st.accepted, st.refused_series), (1, 1), "round {round}");
    }
}

#[test]
fn hints_from_another_thread_give_the_same_ids_and_a_stale_one_still_finds_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let resolver = store.resolver();
    let batch = |t| vec![s("up", "a", &[(t, 1.0)]), s("load", "a", &[(t, 0.5)])];
    // Before any commit: fingerprints only.
    let early = std::thread::spawn({
        let r = resolver.clone();
        let b = batch(NOW);
        move || r.resolve(&b)
    })
    .join()
    .unwrap();
    assert!(early.iter().all(|h| h.id.is_none()));
    assert_eq!(early[0].fingerprint, batch(NOW)[0].labels.fingerprint());
    let mut b = batch(NOW);
    let mut tx = store.begin().unwrap();
    let (ids, st) = tx.append_resolved(&mut b, &early, NOW).unwrap();
    tx.commit().unwrap();
    assert_eq!(st.new_series, 2);
    // Known now: the hints carry the ids the writer gave them.
    let known = resolver.resolve(&batch(NOW + 10));
    assert_eq!(
        known.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![Some(ids[0]), Some(ids[1])]
    );
    // A hint taken before the commit that created the series does not create it again.
    let mut b = batch(NOW + 10);
    let mut tx = store.begin().unwrap();
    let (again, st) = tx.append_resolved(&mut b, &early, NOW + 10).unwrap();
    tx.commit().unwrap();
    assert_eq!((again, st.new_series, st.accepted), (ids, 0, 2));
    assert_eq!(store.series_count(), 2);
}

#[test]
fn the_write_ahead_log_is_checkpointed_off_the_writer_and_synced_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    let mut sync = store.defer_sync().unwrap();
    sync.sync().unwrap();
    let wal = dir.path().join("t.db-wal");
    // About 150 MiB of ingest log, committed back to back.
    let blob: Vec<(i64, f64)> = (0..20_000).map(|i| (NOW + i, i as f64 * 1.37)).collect();
    let mut biggest = 0;
    for round in 0..200i64 {
        let pts: Vec<(i64, f64)> = blob.iter().map(|&(t, v)| (t + round * 20_000, v)).collect();
        let mut b: Vec<SeriesSamples> = (0..4).map(|h| s("x", &format!("h{h}"), &pts)).collect();
        let mut tx = store.begin().unwrap();
        tx.append(&mut b, NOW + round * 20_000).unwrap();
        tx.commit().unwrap();
        sync.sync().unwrap();
        biggest = biggest.max(std::fs::metadata(&wal).unwrap().len());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The log was restarted from its beginning rather than growing with every commit.
    assert!(
        biggest < 100 << 20,
        "the log grew to {biggest} bytes: it was never restarted"
    );
    drop(store);
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.series_count(), 4);
    assert_eq!(store.head_samples(), 4 * 200 * 20_000);
}

#[test]
fn a_change_is_to_mark_once_it_has_started_until_a_commit_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    let records = crate::Records::open(&path).unwrap();
    let now = records.add_change(NOW, "{\"a\":1}").unwrap();
    let later = records.add_change(NOW + 3_600_000, "{\"b\":2}").unwrap();
    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.changes_to_mark(NOW, 10).unwrap(),
        vec![(now, NOW, "{\"a\":1}".to_string())]
    );
    tx.mark_change(now).unwrap();
    // A transaction that does not commit marks nothing.
    drop(tx);
    let mut tx = store.begin().unwrap();
    assert_eq!(tx.changes_to_mark(NOW, 10).unwrap().len(), 1);
    tx.mark_change(now).unwrap();
    tx.commit().unwrap();
    let mut tx = store.begin().unwrap();
    assert!(tx.changes_to_mark(NOW, 10).unwrap().is_empty());
    // The planned one, once it has started.
    assert_eq!(tx.changes_to_mark(NOW + 3_600_000, 10).unwrap()[0].0, later);
}

#[test]
fn changes_recorded_before_markers_were_tracked_count_as_marked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(Store::open(&path, StoreOptions::default()).unwrap());
    {
        // Back to the ninth version, with a change recorded then.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TABLE incident_members; DROP TABLE incident_alerts; DROP TABLE sends; DROP TABLE error_budgets;
             DROP INDEX changes_unmarked;
             ALTER TABLE changes DROP COLUMN marked;
             INSERT INTO changes (start_ms, data) VALUES (1, '{}'); PRAGMA user_version = 9;",
        )
        .unwrap();
    }
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    let mut tx = store.begin().unwrap();
    assert!(tx.changes_to_mark(NOW, 10).unwrap().is_empty());
}

/// A file that is not a database is named with what SQLite says of it, once: the cause is in
/// the message, and no source repeats it in a report of the whole chain.
#[test]
fn a_file_that_is_not_a_database_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let e = match Store::open(&path, StoreOptions::default()) {
        Ok(_) => panic!("opened a file of garbage"),
        Err(e) => e,
    };
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert_eq!(
        chain,
        format!(
            "cannot open database {}: file is not a database",
            path.display()
        )
    );
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn parts(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Each alert's part in an incident is a row of its own, and so is each host, service and probe
/// it touches: a write names the parts that changed and the members gained, and every read
/// (the writer's, the live incidents', the records') puts them all back.
#[test]
fn an_incident_is_read_back_with_every_part_of_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let head = r#"{"id":"INC-1","state":"open","opened_at":5,"alerts":{}}"#;
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    let mut tx = store.begin().unwrap();
    let both = parts(&[("b", r#"{"firing":false}"#), ("a", r#"{"firing":true}"#)]);
    let hosts = [
        ("hosts", "web-2".to_string()),
        ("hosts", "web-1".to_string()),
    ];
    tx.put_incident("INC-1", 5, "open", head, &both, &hosts)
        .unwrap();
    // Then one alert changes: only its part is written, and what it added (a member written
    // again stays one).
    let b = parts(&[("b", r#"{"firing":true,"spans":[[1,null]]}"#)]);
    let gained = [("probes", "https://web".to_string()), hosts[1].clone()];
    tx.put_incident("INC-1", 5, "open", head, &b, &gained)
        .unwrap();
    let want = json(
        r#"{"id":"INC-1","state":"open","opened_at":5,
            "alerts":{"a":{"firing":true},"b":{"firing":true,"spans":[[1,null]]}},
            "hosts":["web-1","web-2"],"services":[],"probes":["https://web"]}"#,
    );
    assert_eq!(json(&tx.incident("INC-1").unwrap().unwrap()), want);
    tx.commit().unwrap();
    let live = store.live_incidents(0).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(json(&live[0].1), want);
    let records = crate::Records::open(&path).unwrap();
    assert_eq!(json(&records.incident("INC-1").unwrap().unwrap()), want);
    assert_eq!(json(&records.incidents(0, 10, 5).unwrap()[0]), want);
    // The alerts come back in the order of their ids, as the record held them.
    assert!(records
        .incident("INC-1")
        .unwrap()
        .unwrap()
        .contains(r#""alerts":{"a":"#));
}

/// Incidents written before the split (every alert inside the incident's row) are split when
/// the database is upgraded, and read back as they were; a row that is not JSON is left alone.
#[test]
fn incidents_written_whole_are_split_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(Store::open(&path, StoreOptions::default()).unwrap());
    let whole = r#"{"id":"INC-1","state":"resolved","opened_at":5,"alerts":{"x":{"firing":false,"spans":[[1,2]]},"y":{"firing":false,"spans":[]}},"hosts":["h"],"services":[],"probes":["p0","p1"]}"#;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE incident_alerts; DROP TABLE incident_members;")
            .unwrap();
        c.execute(
            "INSERT INTO incidents (id, opened_ms, state, data) VALUES ('INC-1', 5, 'resolved', ?1), ('INC-2', 6, 'open', 'not json')",
            [whole],
        )
        .unwrap();
        c.execute_batch("PRAGMA user_version = 12;").unwrap();
    }
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM incident_alerts WHERE incident = 'INC-1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2);
        let data: String = c
            .query_row("SELECT data FROM incidents WHERE id = 'INC-1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(json(&data)["alerts"], json("{}"));
        // Its hosts, services and probes too (schema 14).
        let members: Vec<(String, String)> = c
            .prepare("SELECT kind, member FROM incident_members WHERE incident = 'INC-1' ORDER BY kind, member")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(
            members,
            parts(&[("hosts", "h"), ("probes", "p0"), ("probes", "p1")])
        );
        for set in ["hosts", "services", "probes"] {
            assert_eq!(json(&data)[set], json("[]"), "{set}");
        }
    }
    let tx = store.begin().unwrap();
    assert_eq!(json(&tx.incident("INC-1").unwrap().unwrap()), json(whole));
    assert_eq!(tx.incident("INC-2").unwrap().unwrap(), "not json");
}

/// A database an upgrade has moved on is refused by an earlier version, with why, rather than
/// misread.
#[test]
fn a_database_of_a_later_version_is_refused_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(Store::open(&path, StoreOptions::default()).unwrap());
    let later = schema::VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {later};"))
        .unwrap();
    let e = match Store::open(&path, StoreOptions::default()) {
        Ok(_) => panic!("opened a database of a later version"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&format!(
            "its schema ({later}) is newer than this version of tocsin reads"
        )),
        "{e}"
    );
    assert!(e.contains("backup taken before the upgrade"), "{e}");
}
