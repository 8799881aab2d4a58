//! The HTTP listener: the static files the embedding program gives it
//! ([`crate::sink::StaticFiles`], fleetmq's dashboard), MQTT over WebSocket at `/mqtt`, Prometheus
//! metrics at `/metrics` and a health check at `/healthz`. It runs on the same shards as MQTT;
//! a WebSocket connection is handed to the same connection state machine as a TCP one.

pub mod websocket;

use std::{net::SocketAddr, rc::Rc, time::Duration};

use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::protocol::Role;

use crate::{connection, metrics::Snapshot, shard::Shard};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request head.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    /// `Upgrade: websocket` with a key, and `mqtt` among the offered subprotocols.
    websocket_key: Option<String>,
    offers_mqtt: bool,
    upgrade: bool,
    /// The page a browser's request comes from.
    origin: Option<String>,
    /// The host (and port) the request was sent to.
    host: Option<String>,
    authorization: Option<String>,
}

/// Parses a complete request head; `Ok(None)` while incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("/").to_string(),
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("upgrade") {
            out.upgrade = value.eq_ignore_ascii_case("websocket");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            out.websocket_key = Some(value.trim().to_string());
        } else if h.name.eq_ignore_ascii_case("origin") {
            out.origin = Some(value.trim().to_string());
        } else if h.name.eq_ignore_ascii_case("host") {
            out.host = Some(value.trim().to_string());
        } else if h.name.eq_ignore_ascii_case("authorization") {
            out.authorization = Some(value.trim().to_string());
        } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            out.offers_mqtt |= value
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        }
    }
    Ok(Some((out, len)))
}

/// Serves one HTTP connection (one request; WebSocket upgrades become MQTT connections), over
/// TCP or TLS; `cert_user` is the user a verified TLS client certificate names.
pub async fn serve<S>(shard: Rc<Shard>, mut stream: S, peer: SocketAddr, cert_user: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut head = Vec::with_capacity(1024);
    let parsed = glommio::timer::timeout(HEAD_TIMEOUT, async {
        let mut chunk = [0u8; 2048];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            head.extend_from_slice(&chunk[..n]);
            match parse_head(&head) {
                Ok(Some(done)) => return Ok(Some(Ok(done))),
                Ok(None) if head.len() < MAX_HEAD => continue,
                Ok(None) => return Ok(Some(Err("request head too large".to_string()))),
                Err(e) => return Ok(Some(Err(e))),
            }
        }
    })
    .await;
    let (request, used) = match parsed {
        Ok(Some(Ok(done))) => done,
        Ok(Some(Err(why))) => {
            let _ = respond(&mut stream, 400, "text/plain", why.as_bytes()).await;
            return;
        }
        _ => return,
    };
    tracing::debug!(shard = shard.id, %peer, method = %request.method, path = %request.path, "HTTP request");
    if request.method != "GET" {
        let _ = respond(&mut stream, 405, "text/plain", b"only GET is served\n").await;
        return;
    }
    let path = request.path.split('?').next().unwrap_or("/").to_string();
    match path.as_str() {
        "/mqtt" => upgrade(shard, stream, peer, request, head.len() > used, cert_user).await,
        "/metrics"
            if !shard
                .config
                .web
                .metrics_allowed(request.authorization.as_deref()) =>
        {
            let _ = respond(
                &mut stream,
                401,
                "text/plain",
                b"/metrics needs Authorization: Bearer <the [web] metrics_token>\n",
            )
            .await;
        }
        "/metrics" => {
            let mut text = Snapshot::to_prometheus(&shard.all_snapshots());
            if let Some(sink) = &shard.extensions.sink {
                text.push_str(&sink.prometheus());
            }
            let _ = respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                text.as_bytes(),
            )
            .await;
        }
        "/healthz" => {
            let _ = respond(&mut stream, 200, "text/plain", b"ok\n").await;
        }
        _ => {
            let name = path.trim_start_matches('/');
            let name = if name.is_empty() { "index.html" } else { name };
            let file = shard
                .extensions
                .static_files
                .as_ref()
                .and_then(|files| files.get(name));
            match file {
                Some((mime, body)) => {
                    let _ = respond(&mut stream, 200, mime, body).await;
                }
                None => {
                    let _ = respond(&mut stream, 404, "text/plain", b"not found\n").await;
                }
            }
        }
    }
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    mut stream: S,
    peer: SocketAddr,
    request: Request,
    early_bytes: bool,
    cert_user: Option<String>,
) {
    let Some(key) = request.websocket_key.filter(|_| request.upgrade) else {
        let _ = respond(
            &mut stream,
            426,
            "text/plain",
            b"upgrade to a WebSocket with subprotocol mqtt\n",
        )
        .await;
        return;
    };
    if !request.offers_mqtt {
        let _ = respond(
            &mut stream,
            400,
            "text/plain",
            b"the WebSocket subprotocol must be mqtt\n",
        )
        .await;
        return;
    }
    let web = &shard.config.web;
    if !web.origin_allowed(request.origin.as_deref(), request.host.as_deref()) {
        crate::metrics::bump(&shard.metrics.websocket_origin_refused, 1);
        tracing::info!(shard = shard.id, %peer, origin = ?request.origin, "WebSocket upgrade refused: origin not allowed");
        let why = format!(
            "a page from {} may not use MQTT over WebSocket here; \
             add its origin to [web] allowed_origins to let it\n",
            request.origin.as_deref().unwrap_or("?")
        );
        let _ = respond(&mut stream, 403, "text/plain", why.as_bytes()).await;
        return;
    }
    if early_bytes {
        // A client may not send frames before the 101 (RFC 6455 section 4.1).
        let _ = respond(
            &mut stream,
            400,
            "text/plain",
            b"data before the handshake completed\n",
        )
        .await;
        return;
    }
    if stream
        .write_all(websocket::upgrade_response(key.as_bytes()).as_bytes())
        .await
        .is_err()
    {
        return;
    }
    // A frame or message may hold a whole MQTT packet of the largest size accepted (and a
    // little more: a client may put more than one packet in a message).
    let largest = (shard.config.limits.max_packet_size as usize).saturating_mul(2);
    let limits = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(largest.max(64 << 20)))
        .max_frame_size(Some(largest.max(16 << 20)));
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(limits)).await;
    connection::serve(shard, websocket::WsBytes::new(ws), peer, cert_user).await;
}

/// Writes a whole response and closes.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        _ => "",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {challenge}Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_websocket_upgrade_offering_mqtt() {
        let head = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqttv3.1, mqtt\r\n\r\n";
        let (req, used) = parse_head(head).unwrap().unwrap();
        assert_eq!(used, head.len());
        assert_eq!(req.path, "/mqtt");
        assert!(req.upgrade && req.offers_mqtt);
        assert_eq!(
            req.websocket_key.as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        // RFC 6455 section 1.3's example key and accept value.
        assert!(websocket::upgrade_response(b"dGhlIHNhbXBsZSBub25jZQ==")
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[test]
    fn incomplete_head_waits_and_garbage_is_refused() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert!(parse_head(b"\x00\x01garbage\r\n\r\n").is_err());
    }
}
