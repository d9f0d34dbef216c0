"""Patient channels: the REST webhook (web clients) and, later, SMS."""
