"""Patient channels: the REST webhook (web clients) and, later, SMS. Loading them (the Rasa server does,
from credentials.yml) also applies `rasa_patches`."""

from bot.channels import rasa_patches

rasa_patches.apply()
