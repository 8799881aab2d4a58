//! Security against real peers: mosquitto_pub/mosquitto_sub over TLS with client certificates
//! and passwords, and Eclipse Paho (Python) over TLS with MQTT 5.0 reason codes. Certificates
//! are generated here with rcgen.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    path::Path,
    process::{Command, Output},
};

use common::{pki, TestBroker};

const FLEET_ACL: &str = "user dashboard\ntopic read fleet/#\n\npattern write fleet/%u/#\n";

struct Fleet {
    broker: TestBroker,
    dir: tempfile::TempDir,
    ca: pki::Ca,
}

/// A broker with `mqtts` (optional client certificates), the dashboard's password, the ACL.
fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("fleet CA");
    let server = ca.server();
    let cert = pki::write(dir.path(), "server.pem", &server.cert);
    let key = pki::write(dir.path(), "server.key", &server.key);
    let ca_file = pki::write(dir.path(), "ca.pem", &ca.pem());
    let hash = broker::security::passwd::hash_password(
        b"pw-dash",
        std::num::NonZeroU32::new(1000).unwrap(),
    )
    .unwrap();
    let passwd = pki::write(dir.path(), "passwd", &format!("dashboard:{hash}\n"));
    let acl = pki::write(dir.path(), "acl", FLEET_ACL);
    let broker = TestBroker::with(|c| {
        c.mqtts = Some("127.0.0.1:0".parse().unwrap());
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        c.tls.client_ca = Some(ca_file);
        c.auth.password_file = Some(passwd);
        c.auth.acl_file = Some(acl);
    });
    Fleet { broker, dir, ca }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("mosquitto-clients installed")
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
#[ignore = "needs mosquitto-clients (Debian); .ci/run installs them"]
fn mosquitto_clients_over_tls_with_certificates_and_passwords() {
    let f = fleet();
    let port = f.broker.handle.mqtts_addr().unwrap().port().to_string();
    let v1 = f.ca.client("v1", &[]);
    pki::write(f.dir.path(), "v1.pem", &v1.cert);
    pki::write(f.dir.path(), "v1.key", &v1.key);
    let other = pki::Ca::new("another CA").client("v1", &[]);
    pki::write(f.dir.path(), "bad.pem", &other.cert);
    pki::write(f.dir.path(), "bad.key", &other.key);
    let d = f.dir.path();

    // The dashboard logs in with its password over TLS and waits for one message.
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &path(d, "ca.pem"),
        ])
        .args([
            "-u",
            "dashboard",
            "-P",
            "pw-dash",
            "-t",
            "fleet/#",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .args(["-V", "mqttv311", "-q", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    f.broker.wait_for_subscriptions(1);

    let publish = |cert: &str, key: &str, topic: &str| {
        run(Command::new("mosquitto_pub")
            .args([
                "-h",
                "localhost",
                "-p",
                &port,
                "--cafile",
                &path(d, "ca.pem"),
            ])
            .args(["--cert", &path(d, cert), "--key", &path(d, key)])
            .args(["-V", "mqttv5", "-q", "1", "-t", topic, "-m", "hello"]))
    };
    // The vehicle's certificate (CN v1) names it: another vehicle's topic is refused (0x87),
    // a certificate from another CA never gets past the handshake.
    // mosquitto_pub exits 0 but reports the PUBACK's reason code.
    let denied = publish("v1.pem", "v1.key", "fleet/v2/gps");
    let said = String::from_utf8_lossy(&denied.stderr);
    assert!(
        said.contains("Not authorized"),
        "v1 publishing to fleet/v2: {said}"
    );
    let stranger = publish("bad.pem", "bad.key", "fleet/v1/gps");
    assert!(
        !stranger.status.success(),
        "a wrong-CA certificate must be refused"
    );
    let own = publish("v1.pem", "v1.key", "fleet/v1/gps");
    assert!(own.status.success() && own.stderr.is_empty(), "{own:?}");

    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success(), "mosquitto_sub got nothing");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");

    // A wrong password: mosquitto_sub reports the refusal and exits non-zero.
    let wrong = run(Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &path(d, "ca.pem"),
        ])
        .args([
            "-u",
            "dashboard",
            "-P",
            "nope",
            "-t",
            "fleet/#",
            "-C",
            "1",
            "-W",
            "3",
        ]));
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr).to_lowercase();
    assert!(
        said.contains("not authorised") || said.contains("not authorized"),
        "{said}"
    );
}

#[test]
#[ignore = "needs python3-paho-mqtt (Debian); .ci/run installs it"]
fn paho_over_tls_sees_the_5_0_reason_codes() {
    let f = fleet();
    let port = f.broker.handle.mqtts_addr().unwrap().port();
    let script = format!(
        r#"
import ssl, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
codes = {{}}
def run(name, user, pw, action):
    # Each step waits for the broker's answer (CONNACK, then SUBACK or PUBACK), not a delay.
    done = threading.Event()
    def answered(key, value):
        codes[name + key] = value
        done.set()
    def on_connect(c, u, f, rc, p):
        codes[name + ".connect"] = rc.value
        if rc.value >= 0x80 or not action:
            done.set()
        else:
            action(c)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs="{ca}")
    c.username_pw_set(user, pw)
    c.on_connect = on_connect
    c.on_subscribe = lambda c, u, mid, rcs, p: answered(".suback", rcs[0].value)
    c.on_publish = lambda c, u, mid, rc, p: answered(".puback", rc.value)
    c.connect("localhost", {port})
    c.loop_start()
    if not done.wait(10):
        sys.exit(name + ": no answer from the broker within 10 s")
    c.loop_stop()
run("bad", "dashboard", "wrong", None)
run("dash", "dashboard", "pw-dash", lambda c: c.subscribe("fleet/#", 1))
run("dash2", "dashboard", "pw-dash", lambda c: c.publish("fleet/v1/gps", "x", 1))
print(codes["bad.connect"], codes["dash.connect"], codes["dash.suback"], codes["dash2.puback"])
"#,
        ca = f.dir.path().join("ca.pem").display(),
    );
    let out = run(Command::new("python3").args(["-c", &script]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 134 = 0x86 bad user name or password; 0 = success; 1 = granted QoS 1; 135 = 0x87.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "134 0 1 135");
}
