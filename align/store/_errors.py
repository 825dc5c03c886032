"""Errors raised by the activation store; all are ``ValueError`` subclasses whose message says what to do."""


class StoreMismatchError(ValueError):
    """Two stores (or a store and the parts of an interrupted run) disagree: stimulus order, config or layers."""


class NonFiniteActivationError(ValueError):
    """Activations with NaN or inf values were given to ``StoreWriter.write_part``; names the layer and stimuli."""


class StoreFormatError(ValueError):
    """A file is not a readable align store (not Parquet, no ``align`` metadata, columns that disagree with it, a
    repeated stimulus id, a page whose checksum does not match); the message names the file and says to delete it
    and re-extract."""
