"""The read buffer under paho's socket: paho's reads (1 byte, 1 byte, the rest) served from one recv."""

import socket

import pytest

from tracker.ingest.buffered_socket import BufferedSocket


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    b.setblocking(False)
    yield a, BufferedSocket(b, chunk=64)
    a.close()
    b.close()


def test_reads_as_paho_does_from_one_buffer(pair):
    sender, sock = pair
    sender.sendall(b"\x30\x05hello\x30\x03abc")
    assert sock.recv(1) == b"\x30"
    assert sock.pending() == 11  # the rest of what one recv() took
    assert sock.recv(1) == b"\x05"
    assert sock.recv(5) == b"hello"
    assert [sock.recv(1), sock.recv(1), sock.recv(3)] == [b"\x30", b"\x03", b"abc"]
    assert sock.pending() == 0


def test_a_read_longer_than_the_buffer_returns_what_is_there(pair):
    sender, sock = pair
    sender.sendall(b"\x30\x0aabc")
    assert sock.recv(2) == b"\x30\x0a"
    assert sock.recv(10) == b"abc"  # a short read, as from a socket: paho asks again for the rest
    sender.sendall(b"defghij")
    assert sock.recv(7) == b"defghij"


def test_nothing_to_read_raises_as_a_non_blocking_socket_does(pair):
    _, sock = pair
    with pytest.raises(BlockingIOError):
        sock.recv(1)


def test_a_closed_peer_reads_as_empty(pair):
    sender, sock = pair
    sender.sendall(b"\x30")
    sender.close()
    assert sock.recv(1) == b"\x30"
    assert sock.recv(1) == b""


def test_everything_else_is_the_socket_s_own(pair):
    _, sock = pair
    assert sock.fileno() == sock._sock.fileno()
    assert sock.getsockname() == sock._sock.getsockname()
