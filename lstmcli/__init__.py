"""lstmcli: train stacked LSTMs on CSV time series, and show them the way the textbook draws them."""

__version__ = "0.1.0"
