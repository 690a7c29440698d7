//! The collector away for two minutes while an agent samples every second: when it is back,
//! every sample of those two minutes is stored, each once.

use std::time::{Duration, Instant};

use tocsin_e2e::{metric, serial, wait_for, Proc, Stack};

#[test]
fn a_two_minute_collector_outage_loses_nothing_and_stores_nothing_twice() {
    let _g = serial();
    let s = Stack::with_textfile("", "outage_probe 1\n");
    let mut c = s.collector("127.0.0.1:0", &s.p("rules"));
    let addr = c.addr.clone();
    let a = s.agent(
        &c,
        &[
            "--interval",
            "1s",
            "--textfile-dir",
            &s.p("tf"),
            "--host",
            "outage-host",
        ],
    );
    let agent_metrics = a.url("/metrics");
    wait_for("first samples", Duration::from_secs(15), || {
        (metric(&agent_metrics, "tocsin_agent_samples_sent_total") > 0.0).then_some(())
    });
    c.terminate();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(120));
    let queued = metric(&agent_metrics, "tocsin_agent_buffer_records");
    assert!(queued >= 115.0, "the agent kept its batches: {queued}");
    let c = s.collector(&addr, &s.p("rules"));
    let outage = down.elapsed();
    wait_for("the backlog replayed", Duration::from_secs(60), || {
        (metric(&agent_metrics, "tocsin_agent_buffer_records") == 0.0).then_some(())
    });
    // Stop sampling, then count what the store holds.
    let mut a = a;
    a.terminate();
    let mut c: Proc = c;
    c.terminate();
    let mut series = s.stored(|l| {
        l.metric_name() == Some("outage_probe") && l.get("host") == Some("outage-host")
    });
    assert_eq!(series.len(), 1);
    let samples = series.remove(0);
    let gaps: Vec<i64> = samples
        .windows(2)
        .map(|w| w[1].timestamp_ms - w[0].timestamp_ms)
        .collect();
    assert!(
        gaps.iter().all(|g| *g > 0 && *g < 1_600),
        "one sample a second, none missing, none twice (outage {outage:?}): largest gap {:?} ms",
        gaps.iter().max()
    );
    let outage_samples = samples
        .iter()
        .filter(|x| {
            let t = x.timestamp_ms;
            t > samples[0].timestamp_ms + 2_000 && t < samples[0].timestamp_ms + 120_000
        })
        .count();
    assert!(
        outage_samples >= 115,
        "{outage_samples} samples inside the outage"
    );
    assert!(samples.len() >= 120, "{} samples", samples.len());
}
