//! Broker connection flags shared by `fleetmq simulate` and `fleetmq loadgen`.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use simulator::mqtt::{tls, BrokerUrl, ClientOptions};

use crate::exit::UsageError;

/// How to reach the broker.
#[derive(Debug, Args)]
pub struct MqttArgs {
    /// Broker URL: mqtt://host:port or mqtts://host:port.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", value_name = "URL")]
    pub broker: String,
    /// MQTT version: 3.1.1 or 5.
    #[arg(long, default_value = "3.1.1", value_name = "V")]
    pub mqtt_version: String,
    /// QoS of every publish (0, 1 or 2).
    #[arg(long, default_value_t = 1, value_name = "Q")]
    pub qos: u8,
    /// User name for the broker.
    #[arg(long)]
    pub username: Option<String>,
    /// Password for the broker.
    #[arg(long)]
    pub password: Option<String>,
    /// CA certificates (PEM) trusted for mqtts:// [default: the system bundle].
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mqtts://; needs --client-key.
    #[arg(long, value_name = "PEM")]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mqtts://; needs --client-cert.
    #[arg(long, value_name = "PEM")]
    pub client_key: Option<PathBuf>,
    /// Keep alive, seconds.
    #[arg(long, default_value_t = 60, value_name = "S")]
    pub keep_alive: u16,
    /// Most unacknowledged QoS 1/2 messages per connection.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_inflight: u16,
    /// Executor threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

impl MqttArgs {
    /// The QoS.
    ///
    /// # Errors
    /// Not 0, 1 or 2.
    pub fn qos(&self) -> Result<protocol::QoS, UsageError> {
        protocol::QoS::from_u8(self.qos).ok_or_else(|| UsageError("--qos must be 0, 1 or 2".into()))
    }

    /// The thread count.
    ///
    /// # Errors
    /// Zero.
    pub fn threads(&self) -> Result<usize, UsageError> {
        match self.threads {
            Some(0) => Err(UsageError("--threads must be at least 1".into())),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }

    /// Validated client options (TLS configuration loaded for mqtts://).
    ///
    /// # Errors
    /// A flag that is wrong or does not fit the others, naming it.
    pub fn client_options(&self) -> Result<ClientOptions, UsageError> {
        let usage = |m: String| UsageError(m);
        let protocol = match self.mqtt_version.as_str() {
            "3.1.1" | "4" => protocol::Protocol::V3_1_1,
            "5" | "5.0" => protocol::Protocol::V5,
            other => return Err(usage(format!("--mqtt-version `{other}`: use 3.1.1 or 5"))),
        };
        let url = BrokerUrl::parse(&self.broker).map_err(|e| usage(format!("--broker {e}")))?;
        let tls_flags =
            self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if tls_flags && !url.tls {
            return Err(usage(
                "--ca-file/--client-cert/--client-key need an mqtts:// broker".into(),
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(usage("--client-cert and --client-key go together".into()));
        }
        if self.password.is_some() && self.username.is_none() && !protocol.is_v5() {
            return Err(usage(
                "--password without --username needs --mqtt-version 5".into(),
            ));
        }
        let tls = if url.tls {
            Some(
                tls::client_config(
                    self.ca_file.as_deref(),
                    self.client_cert.as_deref(),
                    self.client_key.as_deref(),
                )
                .map_err(|e| usage(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(ClientOptions {
            url,
            protocol,
            username: self.username.clone(),
            password: self.password.clone(),
            keep_alive_s: self.keep_alive,
            max_inflight: self.max_inflight.max(1),
            tls,
            connect_timeout: Duration::from_secs(10),
        })
    }
}
