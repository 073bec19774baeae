"""A process pool mapping lambdas and closures.

The standard library's pool can only send functions it can find again by
name; multiprocess serializes lambdas, closures and functions defined in
__main__ with dill, so they work as pool tasks under every start method.

    python examples/pool_lambda.py
"""
import multiprocess as mp


def make_polynomial(*coefficients):
    # a closure: the coefficients travel with the function
    return lambda x: sum(c * x ** i for i, c in enumerate(coefficients))


def main():
    with mp.Pool(2) as pool:
        print("squares:", pool.map(lambda x: x * x, range(8)))

        poly = make_polynomial(1, 0, 2)          # 1 + 2x^2
        print("1 + 2x^2:", pool.map(poly, range(5)))

        print("starmap:", pool.starmap(lambda a, b: a ** b, [(2, 3), (3, 2)]))
        print("imap:", list(pool.imap(lambda s: s[::-1], ['abc', 'pool'])))
        pending = pool.apply_async(lambda *xs: max(xs), (4, 9, 2))
        print("apply_async:", pending.get(timeout=30))

    # the same under spawn: fresh interpreters that receive the lambda by value
    with mp.get_context('spawn').Pool(2) as pool:
        print("spawn:", pool.map(make_polynomial(0, 1), [10, 20]))


if __name__ == '__main__':
    main()
