import argparse


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input")


def main(args: argparse.Namespace) -> int:
    raise NotImplementedError
