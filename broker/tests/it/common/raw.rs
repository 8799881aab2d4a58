//! A minimal blocking MQTT peer over a raw socket, for what a well-behaved client library cannot
//! send: garbage, oversized packets, wildcards in PUBLISH, silence after CONNECT.

#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use protocol::{decode, encode, ByteStr, Connect, Packet, Properties, Protocol, Will};

pub struct Raw {
    pub stream: TcpStream,
    pub protocol: Protocol,
    buf: BytesMut,
}

impl Raw {
    pub fn open(port: u16, protocol: Protocol) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Raw {
            stream,
            protocol,
            buf: BytesMut::new(),
        }
    }

    pub fn connect_packet(
        protocol: Protocol,
        id: &str,
        keep_alive: u16,
        will: Option<Will>,
    ) -> Packet {
        Packet::Connect(Connect {
            protocol,
            clean_start: true,
            keep_alive,
            client_id: ByteStr::from(id),
            will,
            username: None,
            password: None,
            properties: Properties::default(),
        })
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.protocol, &mut out).expect("encodable");
        self.stream.write_all(&out).expect("write");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed: a failed write is part of what tests observe.
        let _ = self.stream.write_all(bytes);
    }

    /// The next packet, or `None` if the broker closed the connection, within `wait`.
    pub fn recv(&mut self, wait: Duration) -> Option<Packet> {
        match self.next_packet(wait) {
            Received::Packet(p) => Some(*p),
            Received::Closed => None,
            Received::TimedOut => panic!("no packet within {wait:?}"),
        }
    }

    /// The next packet within `wait`, or `None` if none came (or the broker closed).
    pub fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        match self.next_packet(wait) {
            Received::Packet(p) => Some(*p),
            Received::Closed | Received::TimedOut => None,
        }
    }

    fn next_packet(&mut self, wait: Duration) -> Received {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) =
                decode(&mut self.buf, self.protocol, u32::MAX).expect("valid from broker")
            {
                return Received::Packet(Box::new(p));
            }
            if Instant::now() >= deadline {
                return Received::TimedOut;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Received::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Received::Closed,
            }
        }
    }

    /// Drops the connection without DISCONNECT, as a client whose network fails would, and
    /// waits until the broker has closed its side too: by then it has handled the loss (and
    /// sent or scheduled the Will).
    pub fn vanish(mut self, wait: Duration) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
        self.until_closed(wait);
    }

    /// Reads until the broker closes the socket; returns the packets seen on the way.
    pub fn until_closed(&mut self, wait: Duration) -> Vec<Packet> {
        let mut seen = Vec::new();
        while let Some(p) = self.recv(wait) {
            seen.push(p);
        }
        seen
    }
}

/// What one wait for a packet brought.
enum Received {
    Packet(Box<Packet>),
    Closed,
    TimedOut,
}
