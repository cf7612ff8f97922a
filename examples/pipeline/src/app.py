"""A tiny application the example pipeline builds."""


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def main() -> None:
    """Entry point."""
    print(add(2, 3))


if __name__ == "__main__":
    main()
