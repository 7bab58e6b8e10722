import argparse


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input")


def main(args: argparse.Namespace) -> int:
    raise NotImplementedError
