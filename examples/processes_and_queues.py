"""Processes that talk through queues: a producer and a consumer.

The producer puts work items on one queue; the consumer transforms each
item with a function it received as an argument (a lambda: dill carries it
to the child) and reports on a second queue.  None marks the end.

    python examples/processes_and_queues.py
"""
import multiprocess as mp


def produce(out_q, n):
    for i in range(n):
        out_q.put(i)
    out_q.put(None)                     # end of stream


def consume(in_q, out_q, transform):
    while (item := in_q.get()) is not None:
        out_q.put((item, transform(item)))
    out_q.put(None)


def main():
    work, results = mp.Queue(), mp.Queue()
    procs = [mp.Process(target=produce, args=(work, 5)),
             mp.Process(target=consume, args=(work, results, lambda x: x ** 3))]
    for p in procs:
        p.start()
    # drain the results before joining: a child exits only once what it
    # put on a queue has been written to the pipe
    while (pair := results.get(timeout=30)) is not None:
        print("cube of %d is %d" % pair)
    for p in procs:
        p.join(30)
    print("exit codes:", [p.exitcode for p in procs])


if __name__ == '__main__':
    main()
