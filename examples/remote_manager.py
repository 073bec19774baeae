"""A manager server that clients reach over TCP, with an authentication key.

The server would normally run on another machine (``serve_forever()`` in
its own program); here it runs in a child process on 127.0.0.1 and picks a
free port, which it reports back through a pipe.  Clients connect with the
address and the authkey; a wrong key is refused.

    python examples/remote_manager.py
"""
import queue

import multiprocess as mp
from multiprocess.managers import BaseManager

AUTHKEY = b'example-secret'


class JobManager(BaseManager):
    """Shares one queue and one dict, by name, with whoever connects."""


def run_server(report_address):
    jobs, scores = queue.Queue(), {}
    # the callables run in the server; clients get proxies to what they return
    JobManager.register('get_jobs', callable=lambda: jobs)
    JobManager.register('get_scores', callable=lambda: scores, proxytype=None)
    manager = JobManager(address=('127.0.0.1', 0), authkey=AUTHKEY)
    server = manager.get_server()
    report_address.send(server.address)          # port 0: the OS chose one
    report_address.close()
    server.serve_forever()


def client(address):
    # a client only needs the names, not the callables
    JobManager.register('get_jobs')
    JobManager.register('get_scores')
    m = JobManager(address=address, authkey=AUTHKEY)
    m.connect()
    return m


def main():
    receiver, sender = mp.Pipe(duplex=False)
    server = mp.Process(target=run_server, args=(sender,), daemon=True)
    server.start()
    if not receiver.poll(30):
        raise SystemExit("the manager server did not start")
    address = receiver.recv()
    print("manager server listening on %s:%d" % address)

    producer = client(address)
    for n in (3, 4, 5):
        producer.get_jobs().put(n)

    consumer = client(address)                   # a second, independent client
    jobs, scores = consumer.get_jobs(), consumer.get_scores()
    while not jobs.empty():
        n = jobs.get()
        scores.update({n: n * n})
    print("scores kept by the server:", dict(sorted(producer.get_scores().items())))

    try:
        JobManager(address=address, authkey=b'wrong key').connect()
    except mp.AuthenticationError as exc:
        print("a wrong authkey is refused:", type(exc).__name__)

    server.terminate()                           # serve_forever() has no exit of its own
    server.join(30)


if __name__ == '__main__':
    main()
