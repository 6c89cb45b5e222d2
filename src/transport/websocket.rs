//! MQTT over WebSockets on one connection: tungstenite's handshake and framing over an
//! in-memory pipe, fed what the socket gave (after TLS, for `wss`). MQTT rides in binary
//! messages, one packet may span several and several may share one (MQTT 6.0); the
//! subprotocols are `mqtt` (3.1.1, 5.0) and `mqttv3.1`, any path is served.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error, Message, WebSocket};

use super::TransportError;

/// The subprotocols MQTT clients ask for, in our order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// tungstenite's stream: what the socket gave, and what is to be sent.
#[derive(Debug, Default)]
struct Pipe {
    input: BytesMut,
    output: BytesMut,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input.split_to(n));
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Answers with the MQTT subprotocol the client offers. A client that offers none is served
/// too (some do not send the header); one that offers only others gets no subprotocol back,
/// and its library decides.
struct ChooseSubprotocol;

impl Callback for ChooseSubprotocol {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let offered: Vec<&str> = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if let Some(chosen) = SUBPROTOCOLS.iter().find(|p| offered.contains(p)) {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(chosen));
        }
        Ok(response)
    }
}

enum State {
    Handshaking(MidHandshake<ServerHandshake<Pipe, ChooseSubprotocol>>),
    Open(WebSocket<Pipe>),
    /// Between the two, and after a failure.
    Gone,
}

pub struct WsLayer {
    state: State,
}

impl WsLayer {
    /// `max_message` bounds one WebSocket message (and so what one may buffer).
    pub fn new(max_message: usize) -> WsLayer {
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let handshake = ServerHandshake::start(Pipe::default(), ChooseSubprotocol, Some(config));
        WsLayer {
            state: State::Handshaking(handshake),
        }
    }

    /// Takes bytes from below, appending the MQTT bytes they carry to `mqtt`; `Ok(true)` once
    /// the client has closed. What the layer must send (the handshake's answer, pongs, the
    /// close) waits in [`WsLayer::take_output`].
    pub fn decode(&mut self, input: &[u8], mqtt: &mut BytesMut) -> Result<bool, TransportError> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Handshaking(mut handshake) => {
                handshake.get_mut().get_mut().input.extend_from_slice(input);
                match handshake.handshake() {
                    Ok(ws) => self.state = State::Open(ws),
                    Err(HandshakeError::Interrupted(handshake)) => {
                        self.state = State::Handshaking(handshake);
                        return Ok(false);
                    }
                    Err(HandshakeError::Failure(error)) => {
                        return Err(TransportError::WebSocket(error.to_string()))
                    }
                }
                self.read_messages(mqtt)
            }
            State::Open(mut ws) => {
                ws.get_mut().input.extend_from_slice(input);
                self.state = State::Open(ws);
                self.read_messages(mqtt)
            }
            State::Gone => Err(TransportError::WebSocket("closed".into())),
        }
    }

    fn read_messages(&mut self, mqtt: &mut BytesMut) -> Result<bool, TransportError> {
        let State::Open(ws) = &mut self.state else {
            return Ok(false);
        };
        loop {
            match ws.read() {
                Ok(Message::Binary(data)) => mqtt.extend_from_slice(&data),
                // MQTT-6.0.0-1: only binary data frames.
                Ok(Message::Text(_)) => {
                    return Err(TransportError::WebSocket("a text message".into()))
                }
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the close reply.
                    let _ = ws.flush();
                    return Ok(true);
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Ok(true),
                Err(error) => return Err(TransportError::WebSocket(error.to_string())),
            }
        }
        // Pongs tungstenite queued while reading.
        let _ = ws.flush();
        Ok(false)
    }

    /// Frames `mqtt` as one binary message.
    pub fn encode(&mut self, mqtt: &[u8]) -> Result<(), TransportError> {
        let State::Open(ws) = &mut self.state else {
            return Err(TransportError::WebSocket("not open".into()));
        };
        ws.write(Message::Binary(Bytes::copy_from_slice(mqtt)))
            .and_then(|()| ws.flush())
            .map_err(|e| TransportError::WebSocket(e.to_string()))
    }

    /// A close frame (normal closure) before the socket closes.
    pub fn close(&mut self) {
        if let State::Open(ws) = &mut self.state {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }

    /// The bytes for the layer below.
    pub fn take_output(&mut self) -> BytesMut {
        let pipe = match &mut self.state {
            State::Handshaking(handshake) => handshake.get_mut().get_mut(),
            State::Open(ws) => ws.get_mut(),
            State::Gone => return BytesMut::new(),
        };
        std::mem::take(&mut pipe.output)
    }
}
