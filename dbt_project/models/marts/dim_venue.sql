-- The venues (Finnhub's exchange prefixes, as in `BINANCE:BTCUSDT`) whose symbols are not
-- stocks: the same lists the simulator uses to give a symbol its asset class
-- (sources/src/sim/profile.rs, CRYPTO_VENUES and FOREX_VENUES). A symbol without a prefix,
-- or with a prefix not listed here, is a stock.
select venue, asset_class
from (
    values
        ('BINANCE', 'crypto'), ('BINANCEUS', 'crypto'), ('COINBASE', 'crypto'), ('KRAKEN', 'crypto'),
        ('BITFINEX', 'crypto'), ('BITSTAMP', 'crypto'), ('GEMINI', 'crypto'), ('HUOBI', 'crypto'),
        ('OKEX', 'crypto'), ('OKX', 'crypto'), ('BYBIT', 'crypto'), ('KUCOIN', 'crypto'),
        ('POLONIEX', 'crypto'), ('BITTREX', 'crypto'), ('HITBTC', 'crypto'), ('GATEIO', 'crypto'),
        ('OANDA', 'forex'), ('FXCM', 'forex'), ('FOREX.COM', 'forex'), ('FXPRO', 'forex'),
        ('IC MARKETS', 'forex'), ('FHFX', 'forex'), ('OCTAFX', 'forex'), ('PEPPERSTONE', 'forex')
) as v (venue, asset_class)
