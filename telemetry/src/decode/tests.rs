use proptest::prelude::*;

use super::*;

const GPS: &str =
    r#"{"ts":1700000000000,"seq":7,"lat":52.52,"lon":13.405,"speed_kmh":48.5,"heading_deg":271.0}"#;

fn gps_with(replace: &str, by: &str) -> Vec<u8> {
    let text = GPS.replace(replace, by);
    assert_ne!(text, GPS, "fixture replacement `{replace}` matched nothing");
    text.into_bytes()
}

#[test]
fn valid_gps_decodes() {
    let gps = decode_gps(GPS.as_bytes()).unwrap();
    assert_eq!(gps.ts, 1_700_000_000_000);
    assert_eq!(gps.seq, 7);
    assert_eq!(gps.lat, 52.52);
    assert_eq!(gps.odometer_km, None);
}

#[test]
fn unknown_fields_are_ignored_whatever_their_shape() {
    let payload = gps_with(
        r#""seq":7,"#,
        r#""seq":7,"x":{"a":[1,2,{"b":null}]},"y":"z","#,
    );
    assert_eq!(decode_gps(&payload).unwrap().seq, 7);
}

#[test]
fn escaped_keys_still_match() {
    // `\u006c\u0061\u0074` is "lat": a key the decoder cannot borrow, but must still recognise.
    let payload = gps_with(r#""lat""#, r#""\u006c\u0061\u0074""#);
    assert_eq!(decode_gps(&payload).unwrap().lat, 52.52);
}

#[test]
fn optional_fields_accept_null() {
    let payload = gps_with(r#""seq":7"#, r#""seq":7,"hdop":null,"odometer_km":12.5"#);
    let gps = decode_gps(&payload).unwrap();
    assert_eq!(gps.hdop, None);
    assert_eq!(gps.odometer_km, Some(12.5));
}

#[test]
fn missing_field_is_named() {
    let payload = gps_with(r#","lat":52.52"#, "");
    assert_eq!(decode_gps(&payload), Err(Reject::Missing("lat")));
}

#[test]
fn mistyped_field_is_named() {
    let payload = gps_with("52.52", r#""52.52""#);
    match decode_gps(&payload) {
        Err(Reject::Type { field, detail }) => {
            assert_eq!(field, "lat");
            assert!(detail.contains("invalid type: string"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // A fractional ts is not epoch milliseconds.
    let payload = gps_with("1700000000000", "1700000000000.5");
    assert!(matches!(
        decode_gps(&payload),
        Err(Reject::Type { field: "ts", .. })
    ));
    // A negative seq does not fit the counter.
    let payload = gps_with(r#""seq":7"#, r#""seq":-1"#);
    assert!(matches!(
        decode_gps(&payload),
        Err(Reject::Type { field: "seq", .. })
    ));
    // A required field must not be null.
    let payload = gps_with("48.5", "null");
    assert!(matches!(
        decode_gps(&payload),
        Err(Reject::Type {
            field: "speed_kmh",
            ..
        })
    ));
}

#[test]
fn duplicate_field_is_a_reject() {
    let payload = gps_with(r#""seq":7"#, r#""seq":7,"seq":8"#);
    assert_eq!(decode_gps(&payload), Err(Reject::Duplicate("seq")));
}

#[test]
fn out_of_range_values_are_rejects() {
    for (from, to, field) in [
        ("52.52", "90.5", "lat"),
        ("13.405", "-180.1", "lon"),
        ("48.5", "-1", "speed_kmh"),
        ("271.0", "361", "heading_deg"),
        ("1700000000000", "-5", "ts"),
    ] {
        match decode_gps(&gps_with(from, to)) {
            Err(Reject::Range { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn not_an_object_is_a_json_reject() {
    let trailing = format!("{GPS} x");
    for bad in ["", "[]", "42", "{", trailing.as_str(), "online"] {
        assert!(
            matches!(decode_gps(bad.as_bytes()), Err(Reject::Json(_))),
            "{bad:?} not a JSON reject"
        );
    }
}

#[test]
fn reefer_fields_are_checked() {
    let ok =
        r#"{"ts":1,"seq":2,"temp_c":4.2,"setpoint_c":5,"door_open":false,"compressor_on":true}"#;
    let reefer = decode_reefer(ok.as_bytes()).unwrap();
    assert!(reefer.compressor_on);
    assert_eq!(reefer.setpoint_c, 5.0);
    let bad = ok.replace("false", "0");
    assert!(matches!(
        decode_reefer(bad.as_bytes()),
        Err(Reject::Type {
            field: "door_open",
            ..
        })
    ));
    let bad = ok.replace(r#","compressor_on":true"#, "");
    assert_eq!(
        decode_reefer(bad.as_bytes()),
        Err(Reject::Missing("compressor_on"))
    );
    let bad = ok.replace("}", r#","humidity_pct":101}"#);
    assert!(matches!(
        decode_reefer(bad.as_bytes()),
        Err(Reject::Range {
            field: "humidity_pct",
            ..
        })
    ));
}

#[test]
fn decode_message_dispatches_on_the_topic() {
    let (id, msg) = decode_message("fleet/t1/gps", GPS.as_bytes()).unwrap();
    assert_eq!(id, "t1");
    assert!(matches!(msg, Message::Gps(_)));
    assert_eq!(
        decode_message("fleet/t1/status", b"offline").unwrap().1,
        Message::Status(Status::Offline)
    );
    assert_eq!(
        decode_message("fleet/t1/status", b"gone"),
        Err(Reject::Status)
    );
    assert!(matches!(
        decode_message("fleet/t1/reefer", GPS.as_bytes()),
        Err(Reject::Missing(_))
    ));
    assert!(matches!(
        decode_message("fleet/t+1/gps", GPS.as_bytes()),
        Err(Reject::Topic(_))
    ));
}

#[test]
fn reject_messages_are_precise() {
    let payload = gps_with("52.52", "true");
    let text = decode_gps(&payload).unwrap_err().to_string();
    assert!(
        text.starts_with("field `lat`: invalid type: boolean `true`"),
        "{text}"
    );
    assert_eq!(
        decode_gps(&gps_with("52.52", "91"))
            .unwrap_err()
            .to_string(),
        "field `lat` = 91 is out of range (must be within [-90, 90])"
    );
}

fn finite(min: f64, max: f64) -> impl Strategy<Value = f64> {
    min..=max
}

proptest! {
    #[test]
    fn gps_round_trips(
        ts in 0i64..4_000_000_000_000,
        seq in any::<u64>(),
        lat in finite(-90.0, 90.0),
        lon in finite(-180.0, 180.0),
        speed in finite(0.0, 500.0),
        heading in finite(0.0, 360.0),
        odometer in proptest::option::of(finite(0.0, 1e7)),
        hdop in proptest::option::of(finite(0.0, 50.0)),
    ) {
        let gps = Gps { ts, seq, lat, lon, speed_kmh: speed, heading_deg: heading,
                        odometer_km: odometer, hdop };
        prop_assert_eq!(decode_gps(&gps.to_json()), Ok(gps));
    }

    #[test]
    fn reefer_round_trips(
        ts in 0i64..4_000_000_000_000,
        seq in any::<u64>(),
        temp in finite(-100.0, 100.0),
        setpoint in finite(-100.0, 100.0),
        door in any::<bool>(),
        compressor in any::<bool>(),
        ambient in proptest::option::of(finite(-100.0, 100.0)),
        humidity in proptest::option::of(finite(0.0, 100.0)),
    ) {
        let reefer = Reefer { ts, seq, temp_c: temp, setpoint_c: setpoint, door_open: door,
                              compressor_on: compressor, ambient_c: ambient, humidity_pct: humidity };
        prop_assert_eq!(decode_reefer(&reefer.to_json()), Ok(reefer));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_gps(&bytes);
        let _ = decode_reefer(&bytes);
    }
}
