//! A loopback upstream that answers like an LLM API streaming: `text/event-stream` bodies in
//! OpenAI's and Anthropic's shapes, written as HTTP/1.1 chunks cut at seeded random boundaries
//! with a flush and a short pause between them, or closed halfway without the last chunk, as an
//! upstream failing mid-stream.

use crate::http1::wire::{read_body, read_head};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// OpenAI chat completions with `stream_options.include_usage`: the usage in the last chunk.
pub fn openai_stream(prompt_tokens: u64, completion_tokens: u64) -> Vec<u8> {
    let mut s = String::new();
    for word in ["Hel", "lo", ", ", "wor", "ld"] {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}}}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str(&format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{completion_tokens},\"total_tokens\":{}}}}}\n\n",
        prompt_tokens + completion_tokens
    ));
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

/// Anthropic messages: input tokens in `message_start`, output tokens in `message_delta`.
pub fn anthropic_stream(input_tokens: u64, output_tokens: u64) -> Vec<u8> {
    format!(
        "event: message_start\r\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4\",\"usage\":{{\"input_tokens\":{input_tokens},\"output_tokens\":1}}}}}}\r\n\r\n\
         event: content_block_delta\r\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi ü\"}}}}\r\n\r\n\
         event: ping\r\ndata: {{\"type\":\"ping\"}}\r\n\r\n\
         event: message_delta\r\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":{output_tokens}}}}}\r\n\r\n\
         event: message_stop\r\ndata: {{\"type\":\"message_stop\"}}\r\n\r\n"
    )
    .into_bytes()
}

/// What the upstream answers to a path.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The whole stream body.
    pub body: Vec<u8>,
    /// Reset the connection after this many body bytes (None: finish the stream).
    pub reset_after: Option<usize>,
}

/// The running upstream; dropping it stops it.
pub struct SseUpstream {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Cuts `len` bytes into 2..=8 pieces at pseudo-random places drawn from `seed`.
pub fn cut_points(len: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut next = || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces = 2 + (next() % 7) as usize;
    let mut cuts: Vec<usize> = (1..pieces)
        .map(|_| (next() % len.max(1) as u64) as usize)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn serve(mut s: TcpStream, answer: &dyn Fn(&str) -> Answer, seed: u64) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let Some((start, headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    read_body(&mut r, &headers, false)?;
    let path = start.split_whitespace().nth(1).unwrap_or("/").to_string();
    let a = answer(&path);
    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")?;
    s.flush()?;
    let end = a.reset_after.unwrap_or(a.body.len()).min(a.body.len());
    let mut at = 0;
    for cut in cut_points(end, seed)
        .into_iter()
        .chain(std::iter::once(end))
    {
        if cut <= at {
            continue;
        }
        let piece = &a.body[at..cut];
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
        s.write_all(piece)?;
        s.write_all(b"\r\n")?;
        s.flush()?;
        at = cut;
        std::thread::sleep(Duration::from_millis(15));
    }
    if a.reset_after.is_some() {
        // The connection closes without the terminating chunk: the HTTP/1.1 response is
        // incomplete, which Envoy treats as an upstream reset.
        let _ = s.shutdown(std::net::Shutdown::Both);
        return Ok(());
    }
    s.write_all(b"0\r\n\r\n")?;
    s.flush()
}

impl SseUpstream {
    /// Starts it on a free loopback port; `answer` decides each path's stream; connection n
    /// is cut with seed `seed + n`.
    pub fn start(
        seed: u64,
        answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> std::io::Result<SseUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let answer = Arc::new(answer);
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        n += 1;
                        let _ = s.set_nonblocking(false);
                        let a = answer.clone();
                        let seed = seed.wrapping_add(n);
                        std::thread::spawn(move || {
                            let _ = serve(s, &*a, seed);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(SseUpstream {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SseUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
