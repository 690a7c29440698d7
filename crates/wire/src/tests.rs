use super::*;
use proptest::prelude::*;
use tocsin_model::{
    is_valid_label_name, is_valid_metric_name, Labels, Sample as MSample, METRIC_NAME,
};

fn series(name: &str, host: &str, samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, name), ("host", host)]),
        samples: samples.iter().map(|&(t, v)| MSample::new(t, v)).collect(),
    }
}

#[test]
fn round_trip() {
    let s = vec![
        series("up", "a", &[(1000, 1.0)]),
        series("x", "b", &[(1, 2.5), (2, f64::NAN)]),
    ];
    let got = decode(&encode(&to_request(&s)), &Limits::default()).unwrap();
    assert_eq!(got[0], s[0]);
    assert!(got[1].samples[1].value.is_nan());
}

#[test]
fn concatenated_requests_decode_as_one_in_order() {
    let a = vec![series("up", "a", &[(1000, 1.0)])];
    let b = vec![
        series("up", "a", &[(2000, 0.0)]),
        series("x", "b", &[(5, 2.0)]),
    ];
    let body = concat([encode(&to_request(&a)).as_slice(), &encode(&to_request(&b))]).unwrap();
    let got = decode(&body, &Limits::default()).unwrap();
    assert_eq!(got, [a, b].concat());
    assert_eq!(
        concat([b"\xff\xff".as_slice()]).unwrap_err().kind(),
        "snappy"
    );
}

#[test]
fn garbage_is_a_snappy_error() {
    let e = decode(b"\xff\xff\xff\xff\xff\xff", &Limits::default()).unwrap_err();
    assert_eq!(e.kind(), "snappy");
}

#[test]
fn snappy_of_garbage_is_a_protobuf_error() {
    let body = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff")
        .unwrap();
    let e = decode(&body, &Limits::default()).unwrap_err();
    assert_eq!(e.kind(), "protobuf");
}

#[test]
fn limits_enforced() {
    let s = vec![series("up", "a", &[(1, 1.0), (2, 1.0), (3, 1.0)])];
    let body = encode(&to_request(&s));
    let l = Limits {
        max_samples: 2,
        ..Limits::default()
    };
    assert_eq!(
        decode(&body, &l).unwrap_err(),
        WireError::TooManySamples { count: 3, limit: 2 }
    );
    let l = Limits {
        max_decompressed_bytes: 4,
        ..Limits::default()
    };
    assert_eq!(decode(&body, &l).unwrap_err().kind(), "too_large");
}

#[test]
fn invalid_series_named() {
    let mut req = to_request(&[series("up", "a", &[(1, 1.0)])]);
    req.timeseries[0].labels.push(Label {
        name: "bad-name".into(),
        value: "x".into(),
    });
    let e = decode(&encode(&req), &Limits::default()).unwrap_err();
    assert_eq!(e.to_string(), "series 0: invalid label name \"bad-name\"");

    let mut req = to_request(&[series("up", "a", &[(1, 1.0)])]);
    req.timeseries[0].labels.push(Label {
        name: "__tocsin".into(),
        value: "x".into(),
    });
    let e = decode(&encode(&req), &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "series 0: label name \"__tocsin\" is reserved: names starting with __ are internal"
    );

    let mut req = to_request(&[series("up", "a", &[(1, 1.0)])]);
    req.timeseries[0].labels.retain(|l| l.name != METRIC_NAME);
    let e = decode(&encode(&req), &Limits::default()).unwrap_err();
    assert_eq!(e.to_string(), "series 0: no __name__ label");

    let mut req = to_request(&[series("up", "a", &[(1, 1.0)])]);
    req.timeseries[0].labels.push(Label {
        name: "host".into(),
        value: "b".into(),
    });
    let e = decode(&encode(&req), &Limits::default()).unwrap_err();
    assert_eq!(e.to_string(), "series 0: duplicate label name \"host\"");
}

/// The decoder as it was: prost's generic decoding into `WriteRequest`, then validation. The
/// direct decoder must agree with it on every input.
fn decode_reference(raw: &[u8], limits: &Limits) -> Result<Vec<SeriesSamples>, WireError> {
    let req = WriteRequest::decode(raw).map_err(|e| WireError::Protobuf(e.to_string()))?;
    validate_reference(req, limits)
}

fn validate_reference(req: WriteRequest, limits: &Limits) -> Result<Vec<SeriesSamples>, WireError> {
    // A series counts as one sample at least.
    let count: usize = req.timeseries.iter().map(|t| t.samples.len().max(1)).sum();
    if count > limits.max_samples {
        return Err(WireError::TooManySamples {
            count,
            limit: limits.max_samples,
        });
    }
    let mut out = Vec::with_capacity(req.timeseries.len());
    for (index, ts) in req.timeseries.into_iter().enumerate() {
        let bad = |reason: String| WireError::InvalidSeries { index, reason };
        if ts.labels.len() > limits.max_labels_per_series {
            return Err(bad(format!(
                "{} labels, over the limit of {}",
                ts.labels.len(),
                limits.max_labels_per_series
            )));
        }
        for l in &ts.labels {
            if l.name.len() > limits.max_label_name_len {
                return Err(bad(format!(
                    "label name of {} bytes, over the limit of {}",
                    l.name.len(),
                    limits.max_label_name_len
                )));
            }
            if l.value.len() > limits.max_label_value_len {
                return Err(bad(format!(
                    "label {:?} has a value of {} bytes, over the limit of {}",
                    l.name,
                    l.value.len(),
                    limits.max_label_value_len
                )));
            }
            if l.name != METRIC_NAME && !is_valid_label_name(&l.name) {
                return Err(bad(format!("invalid label name {:?}", l.name)));
            }
            if l.name != METRIC_NAME && l.name.starts_with("__") {
                return Err(bad(format!(
                    "label name {:?} is reserved: names starting with __ are internal",
                    l.name
                )));
            }
            if l.value.is_empty() {
                return Err(bad(format!("label {:?} has an empty value", l.name)));
            }
        }
        let labels = Labels::from_vec(
            ts.labels
                .into_iter()
                .map(|l| tocsin_model::Label {
                    name: l.name,
                    value: l.value,
                })
                .collect(),
        )
        .map_err(|dup| bad(format!("duplicate label name {dup:?}")))?;
        match labels.metric_name() {
            None => return Err(bad("no __name__ label".to_string())),
            Some(n) if !is_valid_metric_name(n) => {
                return Err(bad(format!("invalid metric name {n:?}")))
            }
            Some(_) => {}
        }
        out.push(SeriesSamples {
            labels,
            samples: ts
                .samples
                .into_iter()
                .map(|s| MSample::new(s.timestamp, s.value))
                .collect(),
        });
    }
    Ok(out)
}

/// A series with its sample values as bits, so NaN compares equal to itself.
type Comparable = (Labels, Vec<(i64, u64)>);

fn comparable(r: &Result<Vec<SeriesSamples>, WireError>) -> Result<Vec<Comparable>, ()> {
    r.as_ref()
        .map(|v| {
            v.iter()
                .map(|s| {
                    let samples = s
                        .samples
                        .iter()
                        .map(|x| (x.timestamp_ms, x.value.to_bits()));
                    (s.labels.clone(), samples.collect())
                })
                .collect()
        })
        .map_err(|_| ())
}

/// Both decoders accept the same bodies with the same series, and refuse the same ones (for
/// a body with a single fault, with the same kind of error).
fn agree(raw: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let new = decode::decode_request(raw, limits);
    let old = decode_reference(raw, limits);
    prop_assert_eq!(comparable(&new), comparable(&old), "{:?} vs {:?}", new, old);
    Ok(())
}

fn arb_request() -> impl Strategy<Value = WriteRequest> {
    let name = prop_oneof![
        Just(METRIC_NAME.to_string()),
        Just("host".to_string()),
        Just("job".to_string()),
        Just("bad-name".to_string()),
        Just(String::new()),
        "[a-z_]{1,6}",
    ];
    let value = prop_oneof![
        Just(String::new()),
        "[a-z0-9:]{1,8}",
        Just("1x".to_string())
    ];
    let label = (name, value).prop_map(|(name, value)| Label { name, value });
    // Mostly valid series (a name, distinct label names, values), so that a fault planted in
    // the encoding is not hidden behind a validation error.
    let valid = (
        "[a-z_]{1,6}",
        proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{1,5}", 0..4),
    )
        .prop_map(|(metric, rest)| {
            let mut labels = vec![Label {
                name: METRIC_NAME.into(),
                value: metric,
            }];
            labels.extend(rest.into_iter().map(|(name, value)| Label { name, value }));
            labels
        });
    let labels = prop_oneof![
        4 => valid,
        1 => proptest::collection::vec(label, 0..7),
    ];
    let sample =
        (any::<i64>(), any::<f64>()).prop_map(|(timestamp, value)| Sample { value, timestamp });
    let series = (labels, proptest::collection::vec(sample, 0..4))
        .prop_map(|(labels, samples)| TimeSeries { labels, samples });
    let meta = ("[a-z]{0,5}", any::<i32>()).prop_map(|(name, t)| MetricMetadata {
        r#type: t,
        metric_family_name: name,
        help: "h".into(),
        unit: String::new(),
    });
    (
        proptest::collection::vec(series, 0..6),
        proptest::collection::vec(meta, 0..2),
    )
        .prop_map(|(timeseries, metadata)| WriteRequest {
            timeseries,
            metadata,
        })
}

proptest! {
    #[test]
    fn direct_decoder_agrees_with_prost_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        agree(&raw, &Limits::default())?;
    }

    #[test]
    fn direct_decoder_agrees_with_prost_on_requests(
        req in arb_request(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        how in 0u8..3,
        max_samples in 0usize..12,
    ) {
        let mut raw = req.encode_to_vec();
        // As encoded, truncated, or with one bit flipped.
        if !raw.is_empty() {
            match how {
                1 => raw.truncate(cut.index(raw.len())),
                2 => { let i = flip.index(raw.len()); raw[i] ^= 1 << bit; }
                _ => {}
            }
        }
        let limits = Limits { max_samples, max_labels_per_series: 5, max_label_value_len: 6, ..Limits::default() };
        agree(&raw, &limits)?;
        agree(&raw, &Limits::default())?;
    }

    #[test]
    fn decode_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&body, &Limits::default());
    }

    #[test]
    fn round_trip_any(values in proptest::collection::vec((any::<i64>(), -1e300f64..1e300), 1..50)) {
        let s = vec![series("m", "h", &values)];
        let got = decode(&encode(&to_request(&s)), &Limits::default()).unwrap();
        prop_assert_eq!(got, s);
    }
}
