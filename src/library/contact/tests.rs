//! Unit tests of descriptor passing: names, a pass end to end, refusals, malformed passes.

use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn pool(name: &str) -> PoolHandle {
    PoolHandle::new(format!("{name}-{}", std::process::id()).as_bytes())
}

#[test]
fn names_derive_from_pool_and_pe() {
    let p = PoolHandle::new(b"Ab\x00");
    assert_eq!(socket_name(&p, 0x1234), "rsplib-handoff/416200/00001234");
    let long = PoolHandle::new(&[0xff; 32]);
    let n = socket_name(&long, u32::MAX);
    assert_eq!(n.len(), 88);
    assert!(address(&PoolHandle::new(b""), 1).is_err());
    assert!(address(&PoolHandle::new(&[1; 33]), 1).is_err());
    assert!(address(&p, 0).is_err());
}

#[test]
fn a_socket_and_its_bytes_arrive_and_the_socket_works() {
    let p = pool("pass");
    let rx = PassedSocketReceiver::bind(&p, 7).unwrap();
    assert_eq!(
        PassedSocketReceiver::bind(&p, 7).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    pass_socket(&p, 7, theirs.as_fd(), b"first line\n").unwrap();
    drop(theirs);
    let mut buf = [0u8; 64];
    let (fd, n) = rx.receive_timeout(&mut buf, Some(Duration::ZERO)).unwrap();
    assert_eq!(&buf[..n], b"first line\n");
    let mut passed = UnixStream::from(fd);
    passed.write_all(b"pong").unwrap();
    let mut got = [0u8; 4];
    ours.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    // Nothing more queued.
    let e = rx
        .receive_timeout(&mut buf, Some(Duration::from_millis(20)))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(errno_of(&e), Some(libc::EAGAIN));
}

#[test]
fn no_receiver_is_refused_and_the_socket_stays() {
    let p = pool("absent");
    let (a, _b) = UnixStream::pair().unwrap();
    let e = pass_socket(&p, 99, a.as_fd(), b"x").unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::ECONNREFUSED));
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    assert!(e.to_string().contains("PE 0x00000063"), "{e}");
    // Still open: fcntl works on it.
    // SAFETY: querying flags of our descriptor.
    assert!(unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFD) } >= 0);
}

#[test]
fn oversized_already_read_is_refused_at_the_sender() {
    let p = pool("big");
    let rx = PassedSocketReceiver::bind(&p, 1).unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let big = vec![7u8; MAX_ALREADY_READ + 1];
    let e = pass_socket(&p, 1, a.as_fd(), &big).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(errno_of(&e), Some(libc::EMSGSIZE));
    assert!(e.to_string().contains("65537"), "{e}");
    // The largest allowed passes whole.
    pass_socket(&p, 1, a.as_fd(), &big[..MAX_ALREADY_READ]).unwrap();
    let mut buf = vec![0u8; MAX_ALREADY_READ];
    let (_fd, n) = rx.receive(&mut buf).unwrap();
    assert_eq!(n, MAX_ALREADY_READ);
    assert!(buf.iter().all(|&b| b == 7));
}

#[test]
fn bytes_larger_than_the_buffer_wait_for_a_larger_one() {
    let p = pool("small");
    let rx = PassedSocketReceiver::bind(&p, 2).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    pass_socket(&p, 2, theirs.as_fd(), &data).unwrap();
    drop(theirs);
    let mut small = [0u8; 100];
    let e = rx.receive(&mut small).unwrap_err();
    assert_eq!(errno_of(&e), Some(libc::EMSGSIZE));
    assert!(e.to_string().contains("do not fit"), "{e}");
    assert_eq!(rx.pending_len(), Some(1000));
    assert!(rx.receive(&mut small).is_err());
    let mut big = vec![0u8; 1000];
    let (fd, n) = rx.receive(&mut big).unwrap();
    assert_eq!(&big[..n], &data[..]);
    assert_eq!(rx.pending_len(), None);
    UnixStream::from(fd).write_all(b"k").unwrap();
    let mut k = [0u8; 1];
    ours.read_exact(&mut k).unwrap();
    assert_eq!(&k, b"k");
}

/// A socket connected to the receiver's name, as a contact's is.
fn connected(p: &PoolHandle, id: u32) -> OwnedFd {
    let (sa, len) = address(p, id).unwrap();
    let sock = seqpacket_socket().unwrap();
    // SAFETY: connecting a fresh socket to a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    assert_eq!(rc, 0);
    sock
}

/// Sends a raw message with `fds` descriptors and `data` to the receiver's name.
fn send_raw(p: &PoolHandle, id: u32, data: &[u8], fds: &[RawFd]) {
    let sock = connected(p, id);
    // SAFETY: test plumbing with valid buffers.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut control = vec![0u64; 64];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let bytes = (fds.len() * 4) as u32;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(bytes) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            let d = libc::CMSG_DATA(c) as *mut libc::c_int;
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(d.add(i), *fd);
            }
        }
        assert!(libc::sendmsg(sock.as_raw_fd(), &msg, 0) >= 0);
    }
}

fn header(len: usize) -> Vec<u8> {
    let mut h = vec![VERSION, 0, 0, 0];
    h.extend_from_slice(&(len as u32).to_be_bytes());
    h
}

/// True once every copy of `a` (the peer of `b`) is closed: `b` reads end-of-file.
fn peer_closed(b: &mut UnixStream) -> bool {
    b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut one = [0u8; 1];
    matches!(b.read(&mut one), Ok(0))
}

#[test]
fn malformed_passes_are_refused_without_leaking_descriptors() {
    let p = pool("bad");
    let rx = PassedSocketReceiver::bind(&p, 3).unwrap();
    let mut buf = [0u8; 64];
    let cases: Vec<(Vec<u8>, usize, &str)> = vec![
        (header(0), 0, "no descriptor"),
        (header(0), 2, "two descriptors"),
        (header(0), 20, "control data truncated"),
        (b"\x02\0\0\0\0\0\0\0".to_vec(), 1, "version 2"),
        (vec![VERSION, 0], 1, "short header"),
        ([header(5), b"abc".to_vec()].concat(), 1, "length mismatch"),
    ];
    for (data, copies, what) in cases {
        // Every copy passed is of `a`; once the receiver has closed them all (and we ours),
        // `b` reads end-of-file. A leaked copy would keep it open.
        let (a, mut b) = UnixStream::pair().unwrap();
        send_raw(&p, 3, &data, &vec![a.as_raw_fd(); copies]);
        drop(a);
        let e = rx.receive(&mut buf).unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::EPROTO), "{what}: {e}");
        assert!(
            peer_closed(&mut b),
            "{what}: a passed descriptor was not closed"
        );
    }
    // The receiver still works afterwards, and a good pass keeps the socket open.
    let (a, mut b) = UnixStream::pair().unwrap();
    pass_socket(&p, 3, a.as_fd(), b"ok").unwrap();
    drop(a);
    let (got, n) = rx.receive(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ok");
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut one = [0u8; 1];
    assert!(
        b.read(&mut one).is_err(),
        "the passed socket must still be open"
    );
    drop(got);
    assert!(peer_closed(&mut b));
}

#[test]
fn a_contact_that_connects_and_sends_nothing_is_an_error_not_a_hang() {
    let p = pool("silent");
    let rx = PassedSocketReceiver::bind(&p, 4).unwrap();
    drop(connected(&p, 4));
    let mut buf = [0u8; 8];
    let e = rx.receive(&mut buf).unwrap_err();
    assert!(e.to_string().contains("passed nothing"), "{e}");
}
