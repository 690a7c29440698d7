use super::*;
use proptest::prelude::*;
use tocsin_model::Sample as MSample;

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

proptest! {
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
