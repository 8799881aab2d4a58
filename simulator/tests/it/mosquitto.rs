//! The same fleet check against mosquitto (the Debian package), started here on a free port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A mosquitto process, killed when dropped.
struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mosquitto() -> (Mosquitto, u16) {
    let port = free_port();
    let child = Command::new("/usr/sbin/mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto runs (apt-get install mosquitto)");
    let guard = Mosquitto(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, port)
}

#[test]
#[ignore = "needs mosquitto (Debian package); .ci/run installs it"]
fn every_message_arrives_through_mosquitto_3_1_1() {
    let (_mosquitto, port) = mosquitto();
    let config = common::run_config(port, common::model(40), protocol::Protocol::V3_1_1);
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    common::check_gap(&seen, &truth);
}

#[test]
#[ignore = "needs mosquitto (Debian package); .ci/run installs it"]
fn every_message_arrives_through_mosquitto_5_qos_2() {
    let (_mosquitto, port) = mosquitto();
    let mut config = common::run_config(port, common::model(12), protocol::Protocol::V5);
    config.qos = protocol::QoS::ExactlyOnce;
    let (seen, truth, invalid) = common::run_and_watch(port, config);
    common::check(&seen, &truth, invalid);
    common::check_gap(&seen, &truth);
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (all X.509 v3, which
/// rustls requires), made with the openssl command line.
fn certificates(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=fleetmq-test-ca",
            ][..],
            &days,
        ]
        .concat(),
    );
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subj = format!("/CN=fleetmq-test-{name}");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subj,
            ],
        );
        openssl(
            dir,
            &[
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-extfile",
                    ext,
                ][..],
                &days,
            ]
            .concat(),
        );
    }
    // mosquitto drops root privileges before it reads its key.
    for file in ["server.key", "client.key"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
#[ignore = "needs mosquitto (Debian package) and openssl; .ci/run installs them"]
fn mqtts_with_a_client_certificate_through_mosquitto() {
    let dir = std::env::temp_dir().join(format!("fleetmq-tls-{}", std::process::id()));
    certificates(&dir);
    let (plain, tls) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\nlistener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
        d = dir.display()
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = Command::new("/usr/sbin/mosquitto")
        .args(["-c", &dir.join("mosquitto.conf").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto runs");
    let _guard = Mosquitto(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {tls}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut config = common::run_config(plain, common::model(10), protocol::Protocol::V5);
    config.client.url =
        simulator::mqtt::BrokerUrl::parse(&format!("mqtts://127.0.0.1:{tls}")).unwrap();
    config.client.tls = Some(
        simulator::mqtt::tls::client_config(
            Some(&dir.join("ca.pem")),
            Some(&dir.join("client.pem")),
            Some(&dir.join("client.key")),
        )
        .unwrap(),
    );
    let (seen, truth, invalid) = common::run_and_watch(plain, config);
    common::check(&seen, &truth, invalid);
    let _ = std::fs::remove_dir_all(&dir);
}
