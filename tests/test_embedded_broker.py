"""The embedded broker: the bundled Redis on a unix socket, which keeps queued messages across restarts."""

import redis

from supplychain import embedded


def test_long_folder_paths_get_a_short_socket_path(tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    sock = embedded.socket_path_for(deep)
    assert len(str(sock)) <= embedded.MAX_SOCKET_PATH
    assert embedded.socket_path_for(deep) == sock  # stable for the same folder


def test_queued_messages_survive_a_broker_restart(tmp_path):
    directory = tmp_path / "broker"
    embedded.start(directory, daemonize=True)
    try:
        sock = embedded.socket_path_for(directory)
        client = redis.Redis(unix_socket_path=str(sock))
        client.lpush("events", "message-1", "message-2")
        embedded.stop(directory)
        assert not embedded.is_running(sock)

        embedded.start(directory, daemonize=True)
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.lrange("events", 0, -1) == [b"message-2", b"message-1"]
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        embedded.stop(directory)


def test_starting_twice_reuses_the_running_server(tmp_path):
    directory = tmp_path / "broker"
    embedded.start(directory, daemonize=True)
    try:
        assert embedded.start(directory, daemonize=True) is None
        assert embedded.is_running(embedded.socket_path_for(directory))
    finally:
        embedded.stop(directory)
